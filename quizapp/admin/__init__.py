"""Admin area: authentication, cluster health page and actions."""
