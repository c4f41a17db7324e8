"""Tooling apart from the app: the local topology, fake upstreams and process helpers.

Used by tests/, bench/ and scripts/.

Never imported by quizapp/ (which ships); it imports nothing at package level, so
`python -m devstack.fake_openai` can monkey-patch before anything else loads.
"""
