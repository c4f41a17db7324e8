"""Admin pages: the cluster health page (self-refreshing) and its confirmed cluster-wide actions."""

from flask import Blueprint, redirect, render_template, request, session, url_for

from ..payments import service as payments_service
from . import service
from .auth import AUTO_REFRESH, admin_required

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.get("/")
@admin_required
def index():
    return redirect(url_for("admin.health"))


@bp.get("/health")
@admin_required
def health():
    done = request.args.get("done")
    page = service.health_page(fresh=bool(done))
    return render_template("admin/health.html", done=done, auto_refresh=AUTO_REFRESH, **page)


@bp.get("/health/confirm")
@admin_required
def confirm_action():
    action = request.args.get("action", "")
    return render_template("admin/confirm.html", action=action, label=service.action_label(action))


@bp.post("/health/actions")
@admin_required
def health_action():
    action = request.form.get("action", "")
    if request.form.get("confirm") != "yes":
        # Every action is confirmed on its own page first: a stray click changes nothing.
        service.action_label(action)
        return redirect(url_for("admin.confirm_action", action=action), code=303)
    actor = session.get("admin_user") or "admin"
    service.run_cluster_action(action, actor, request.remote_addr)
    return redirect(url_for("admin.health", done=action))


@bp.get("/payments")
@admin_required
def payments():
    return render_template(
        "admin/payments.html", payments=payments_service.payments_attention(), done=request.args.get("done")
    )


@bp.post("/payments/<int:payment_id>/refund")
@admin_required
def refund_payment(payment_id):
    actor = session.get("admin_user") or "admin"
    refunded = payments_service.refund_payment(payment_id, actor=actor)
    return redirect(url_for("admin.payments", done="refunded" if refunded else "failed"))
