"""Admin pages: the cluster health page (self-refreshing) and its cluster-wide actions."""

from flask import Blueprint, redirect, render_template, request, session, url_for

from ..payments import service as payments_service
from . import service
from .auth import admin_required

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.get("/health")
@admin_required
def health():
    page = service.health_page()
    return render_template("admin/health.html", done=request.args.get("done"), **page)


@bp.post("/health/actions")
@admin_required
def health_action():
    action = request.form.get("action", "")
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
