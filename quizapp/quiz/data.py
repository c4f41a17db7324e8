"""Quiz content (questions and business models) loaded from YAML and validated at start-up."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, fields
from pathlib import Path

import yaml

from ..config import ConfigError

SCALE_MIN, SCALE_MAX = 1, 5
MIN_QUESTIONS, MIN_MODELS = 12, 8


@dataclass(frozen=True)
class Option:
    label: str
    weights: dict


@dataclass(frozen=True)
class Question:
    id: str
    kind: str  # choice | scale
    text: str
    options: tuple = ()
    weights: dict | None = None  # scale questions only
    low: str = ""
    high: str = ""

    def valid_choices(self) -> range:
        if self.kind == "scale":
            return range(SCALE_MIN, SCALE_MAX + 1)
        return range(len(self.options))

    def choice_label(self, choice: int) -> str:
        if self.kind == "scale":
            return f"{choice} of {SCALE_MAX}"
        return self.options[choice].label


class AsPlainDict:
    """For a dataclass: as_dict() gives its fields in order, tuples as lists (JSON and templates)."""

    def as_dict(self) -> dict:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {name: list(v) if isinstance(v, tuple) else v for name, v in values.items()}


@dataclass(frozen=True)
class BusinessModel(AsPlainDict):
    id: str
    name: str
    description: str
    strengths: tuple
    risks: tuple
    first_steps: tuple


@dataclass(frozen=True)
class Content:
    questions: tuple
    models: tuple

    def question(self, question_id: str) -> Question | None:
        return self._questions_by_id.get(question_id)

    def model(self, model_id: str) -> BusinessModel | None:
        return self._models_by_id.get(model_id)

    def index_of(self, question_id: str) -> int:
        return self._question_index[question_id]

    # Every page looks questions and models up by id: index them once (the content is immutable).
    @functools.cached_property
    def _questions_by_id(self) -> dict[str, Question]:
        return {q.id: q for q in self.questions}

    @functools.cached_property
    def _models_by_id(self) -> dict[str, BusinessModel]:
        return {m.id: m for m in self.models}

    @functools.cached_property
    def _question_index(self) -> dict[str, int]:
        return {q.id: i for i, q in enumerate(self.questions)}

    @functools.cached_property
    def fingerprint(self) -> str:
        """Changes whenever the question list changes, so old packed answers are never misread."""
        shape = "|".join(f"{q.id}:{q.kind}:{len(q.options)}" for q in self.questions)
        return hashlib.sha256(shape.encode()).hexdigest()[:4]

    def pack_answers(self, answers: dict) -> str:
        """question id -> choice as one digit per question in order ('-' unanswered): ~20 bytes
        in the session instead of ~130, since every choice is a single digit (<= 8 options, 1-5)."""
        digits = "".join(str(answers[q.id]) if q.id in answers else "-" for q in self.questions)
        return f"{self.fingerprint}:{digits}"

    def unpack_answers(self, packed: str) -> dict:
        version, _, digits = (packed or "").partition(":")
        if version != self.fingerprint or len(digits) != len(self.questions):
            return {}  # another content version: the answers cannot be mapped back, start afresh
        return {q.id: int(d) for q, d in zip(self.questions, digits, strict=True) if d != "-"}


class _Checker:
    """Collects the file name into every error so a broken file names itself and the field."""

    def __init__(self, path):
        self.path = path

    def fail(self, where, problem):
        raise ConfigError(f"QUIZ_CONTENT_PATH {self.path}: {where}: {problem}")

    def text(self, mapping, key, where):
        value = mapping.get(key)
        if not isinstance(value, str) or not value.strip():
            self.fail(f"{where}.{key}", "must be a non-empty string")
        return value.strip()

    def texts(self, mapping, key, where):
        value = mapping.get(key)
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(v, str) and v.strip() for v in value)
        ):
            self.fail(f"{where}.{key}", "must be a non-empty list of strings")
        return tuple(v.strip() for v in value)

    def weights(self, mapping, where, model_ids):
        value = mapping.get("weights")
        if not isinstance(value, dict):
            self.fail(f"{where}.weights", "must be a mapping of model id to number")
        for model_id, weight in value.items():
            if model_id not in model_ids:
                self.fail(f"{where}.weights.{model_id}", "is not a known model id")
            if isinstance(weight, bool) or not isinstance(weight, (int, float)):
                self.fail(f"{where}.weights.{model_id}", "must be a number")
        return dict(value)


def load_content(path: str | Path) -> Content:
    """Read and validate the content file; raise ConfigError naming the file and field."""
    check = _Checker(path)
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"QUIZ_CONTENT_PATH {path}: cannot be read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"QUIZ_CONTENT_PATH {path}: is not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        check.fail("top level", "must be a mapping with 'models' and 'questions'")
    models = _load_models(check, raw.get("models"))
    model_ids = {m.id for m in models}
    questions = _load_questions(check, raw.get("questions"), model_ids)
    touched = {mid for q in questions for w in _all_weights(q) for mid in w}
    for model in models:
        if model.id not in touched:
            check.fail(f"models.{model.id}", "no question weighs this model")
    return Content(questions=tuple(questions), models=tuple(models))


def _all_weights(question):
    return [question.weights] if question.kind == "scale" else [o.weights for o in question.options]


def _entries(check, raw_list, kind, minimum):
    """Each (where, mapping, id) of the top-level list of `kind`s: long enough, mappings, ids unique."""
    if not isinstance(raw_list, list) or len(raw_list) < minimum:
        check.fail(f"{kind}s", f"must be a list of at least {minimum} {kind}s")
    seen = set()
    for i, raw in enumerate(raw_list):
        where = f"{kind}s[{i}]"
        if not isinstance(raw, dict):
            check.fail(where, "must be a mapping")
        entry_id = check.text(raw, "id", where)
        if entry_id in seen:
            check.fail(f"{where}.id", f"duplicate {kind} id {entry_id!r}")
        seen.add(entry_id)
        yield where, raw, entry_id


def _load_models(check, raw_models):
    return [
        BusinessModel(
            id=model_id,
            name=check.text(raw, "name", where),
            description=check.text(raw, "description", where),
            strengths=check.texts(raw, "strengths", where),
            risks=check.texts(raw, "risks", where),
            first_steps=check.texts(raw, "first_steps", where),
        )
        for where, raw, model_id in _entries(check, raw_models, "model", MIN_MODELS)
    ]


def _load_questions(check, raw_questions, model_ids):
    questions = []
    for where, raw, question_id in _entries(check, raw_questions, "question", MIN_QUESTIONS):
        if not question_id.replace("_", "").isalnum() or len(question_id) > 40:
            check.fail(f"{where}.id", "must be letters, digits and underscores (at most 40)")
        kind = raw.get("kind")
        text = check.text(raw, "text", where)
        if kind == "scale":
            questions.append(
                Question(
                    id=question_id,
                    kind=kind,
                    text=text,
                    weights=check.weights(raw, where, model_ids),
                    low=check.text(raw, "low", where),
                    high=check.text(raw, "high", where),
                )
            )
        elif kind == "choice":
            questions.append(
                Question(
                    id=question_id, kind=kind, text=text, options=_load_options(check, raw, where, model_ids)
                )
            )
        else:
            check.fail(f"{where}.kind", "must be 'choice' or 'scale'")
    return questions


def _load_options(check, raw, where, model_ids) -> tuple:
    raw_options = raw.get("options")
    if not isinstance(raw_options, list) or not 2 <= len(raw_options) <= 8:
        check.fail(f"{where}.options", "must be a list of 2 to 8 options")
    options = []
    for j, raw_option in enumerate(raw_options):
        owhere = f"{where}.options[{j}]"
        if not isinstance(raw_option, dict):
            check.fail(owhere, "must be a mapping")
        options.append(
            Option(
                label=check.text(raw_option, "label", owhere),
                weights=check.weights(raw_option, owhere, model_ids),
            )
        )
    return tuple(options)
