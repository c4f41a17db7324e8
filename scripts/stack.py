#!/usr/bin/env python3
"""`make stack`: the whole topology on this machine (devstack.local_stack), from the shell.

scripts/stack.py start [--instances 4] [--base-port 8001 | --ports 8001,8002] [--port 8080]
scripts/stack.py stop | status | restart-instance --instance-port P
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devstack.local_stack import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
