"""Walk the quiz through its forms with a Flask test client (tests, and the bench's session sample)."""

from __future__ import annotations

from devstack.forms import csrf_token as csrf_from  # the old name, kept for its callers

__all__ = ["answer_all", "csrf_from"]


def answer_all(client, content, choose=lambda q: 0 if q.kind == "choice" else 3):
    """Start the quiz and answer every question through the pages; return the review response."""
    landing = client.get("/")
    response = client.post("/start", data={"csrf_token": csrf_from(landing)})
    assert response.status_code == 303
    for question in content.questions:
        page = client.get(f"/q/{question.id}")
        assert page.status_code == 200
        response = client.post(
            f"/q/{question.id}",
            data={"csrf_token": csrf_from(page), "choice": str(choose(question))},
        )
        assert response.status_code == 303, response.data[:500]
    return client.get("/review")


def submit(client):
    review = client.get("/review")
    return client.post("/submit", data={"csrf_token": csrf_from(review)})
