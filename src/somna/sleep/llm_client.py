"""The LLM seam of sleep-time: `[llm]` in somna.toml, one litellm call at a time, a per-cycle budget, strict JSON.

    [llm]
    model = "openai/gpt-4o-mini"       # any litellm model string
    api_base = "http://127.0.0.1:8080/v1"  # optional: an OpenAI-compatible server
    api_key_env = "OPENAI_API_KEY"     # the NAME of the variable holding the key; keys are never stored
    max_tokens_per_cycle = 50000       # prompt + completion, over all calls of one cycle
    max_cost_per_cycle = 0.25          # USD, where litellm's local price map knows the model
    timeout = 60                       # seconds per call

Nothing here imports litellm until the first call: a store without `[llm]` never loads it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tomllib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from somna import redaction
from somna.errors import InvalidInput

log = logging.getLogger("somna.sleep.llm")

CHARS_PER_TOKEN = 4  # a conservative estimate for English and code; the server's count is what is charged
MIN_OUTPUT = 128  # a call that cannot afford this many output tokens is not made
MAX_ANSWER = 40_000  # characters: a longer answer is refused unread
FENCE = re.compile(r"^```(?:json)?\s*\n?(.*?)\n?```$", re.S)
M = TypeVar("M", bound=BaseModel)


class BudgetSpent(Exception):
    """The cycle's token or cost budget cannot afford the next call."""


class BadAnswer(Exception):
    """The model's answer is not the JSON the pass asked for (the message never quotes the answer)."""


class LLMUnavailable(Exception):
    """The call failed (connection, timeout, authentication, rate limit): no more calls this cycle."""


@dataclass(frozen=True)
class LLMConfig:
    model: str
    api_base: str | None = None
    api_key_env: str | None = None
    max_tokens_per_cycle: int = 50_000
    max_cost_per_cycle: float = 0.25
    timeout: float = 60.0

    @classmethod
    def load(cls, root: Path) -> LLMConfig | None:
        """`[llm]` of the store's somna.toml, or None when there is none (then no LLM pass runs)."""
        path = root / "somna.toml"
        if not path.exists():
            return None
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"{path}: not valid TOML: {exc}") from None
        raw = data.get("llm")
        if raw is None:
            return None
        if not isinstance(raw, dict):
            raise InvalidInput(f"{path}: [llm] must be a table")
        if "api_key" in raw:
            raise InvalidInput(
                f"{path}: never put a key in somna.toml; set api_key_env to the NAME of the "
                "environment variable that holds it"
            )
        unknown = set(raw) - {
            "model",
            "api_base",
            "api_key_env",
            "max_tokens_per_cycle",
            "max_cost_per_cycle",
            "timeout",
        }
        if unknown:
            raise InvalidInput(f"{path}: unknown keys in [llm]: {sorted(unknown)}")
        model = raw.get("model")
        if not isinstance(model, str) or not model.strip():
            raise InvalidInput(f'{path}: [llm] needs model = "<litellm model>", e.g. "openai/gpt-4o-mini"')
        for key in ("api_base", "api_key_env"):
            if key in raw and not isinstance(raw[key], str):
                raise InvalidInput(f"{path}: llm.{key} must be a string")
        numbers = {"max_tokens_per_cycle": int, "max_cost_per_cycle": float, "timeout": float}
        for key, kind in numbers.items():
            value = raw.get(key)
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or value <= 0
                or (kind is int and not isinstance(value, int))
            ):
                raise InvalidInput(
                    f"{path}: llm.{key} must be a positive {'whole ' if kind is int else ''}number"
                )
        return cls(
            model=model.strip(),
            api_base=raw.get("api_base") or None,
            api_key_env=raw.get("api_key_env"),
            max_tokens_per_cycle=int(raw.get("max_tokens_per_cycle", cls.max_tokens_per_cycle)),
            max_cost_per_cycle=float(raw.get("max_cost_per_cycle", cls.max_cost_per_cycle)),
            timeout=float(raw.get("timeout", cls.timeout)),
        )


def estimate_tokens(text: str) -> int:
    return len(text) // CHARS_PER_TOKEN + 1


NO_LITELLM = (
    "the LLM passes need litellm, which somna's default install leaves out: pip install 'somna[llm]' "
    "(scripts/setup.sh installs it); the deterministic passes ran"
)


def _litellm() -> Any:
    # Lazy and deliberate: litellm takes ~2.5 s to import and, unless told to use the price map it ships
    # with, fetches that map from the network at import. Only an LLM pass that is about to call a model
    # pays for it; a store without [llm] never imports it.
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    with warnings.catch_warnings():  # its import trips deprecations of its own; not the user's concern
        warnings.simplefilter("ignore", DeprecationWarning)
        import litellm

    litellm.suppress_debug_info = True  # it would print hints to stdout
    # its logger prints tracebacks of its own bookkeeping at ERROR; somna reports failed calls itself
    logging.getLogger("LiteLLM").setLevel(logging.CRITICAL)
    return litellm


class Client:
    """The calls of one cycle: each is checked against what is left of the budget before it is made, and
    what it cost is added to the cycle's report (`tokens`, `cost`)."""

    def __init__(self, cfg: LLMConfig, report: Any) -> None:
        self.cfg = cfg
        self.report = report
        self.spent = False  # set once: the passes stop for the rest of this cycle
        self.unavailable = False
        self.calls = 0
        self._prices: tuple[float, float] | None | bool = False  # False: not looked up yet

    # -- budget ---------------------------------------------------------------------------------
    def prices(self) -> tuple[float, float] | None:
        """USD per prompt token and per completion token from litellm's local map; None if it does not know
        the model (then only tokens are counted)."""
        if self._prices is False:
            try:
                p, c = _litellm().cost_per_token(
                    model=self.cfg.model, prompt_tokens=1_000_000, completion_tokens=1_000_000
                )
                self._prices = (p / 1e6, c / 1e6)
            except Exception:  # litellm raises its own not-mapped error, and others for odd model strings
                self._prices = None
                self.report.notes.append(
                    f"LLM cost unknown for {self.cfg.model} (not in litellm's price map): "
                    "counting tokens only"
                )
        return self._prices if isinstance(self._prices, tuple) else None

    def stop(self, why: str) -> BudgetSpent:
        if not self.spent:
            self.spent = True
            self.report.notes.append(
                f"budget spent ({why}): {self.report.tokens} tokens, ${self.report.cost:.4f} this cycle; the LLM "
                "passes stopped, and what is left waits for the next cycle"
            )
            log.info("LLM budget spent (%s)", why)
        return BudgetSpent(why)

    def afford(self, prompt_chars: int, want_output: int) -> int:
        """How many output tokens the next call may use, or raise BudgetSpent."""
        if self.spent:
            raise BudgetSpent("already spent")
        prompt = prompt_chars // CHARS_PER_TOKEN + 1
        left = self.cfg.max_tokens_per_cycle - self.report.tokens - prompt
        if left < MIN_OUTPUT:
            raise self.stop(f"max_tokens_per_cycle {self.cfg.max_tokens_per_cycle}")
        out = min(want_output, left)
        prices = self.prices()
        if prices is not None:
            money_left = self.cfg.max_cost_per_cycle - self.report.cost - prompt * prices[0]
            if money_left < MIN_OUTPUT * prices[1]:
                raise self.stop(f"max_cost_per_cycle ${self.cfg.max_cost_per_cycle}")
            if prices[1] > 0:
                out = min(out, int(money_left / prices[1]))
        return out

    # -- calls ----------------------------------------------------------------------------------
    def ask(self, system: str, user: str, *, max_output: int = 1500) -> str:
        """One chat completion; returns the answer's text. Raises BudgetSpent, LLMUnavailable."""
        if self.unavailable:
            raise LLMUnavailable("an earlier call failed this cycle")
        try:
            litellm = _litellm()
        except ImportError:
            self.unavailable = True
            self.report.notes.append(NO_LITELLM)
            log.warning(NO_LITELLM)
            raise LLMUnavailable(NO_LITELLM) from None
        out_tokens = self.afford(len(system) + len(user) + 40, max_output)
        key = os.environ.get(self.cfg.api_key_env) if self.cfg.api_key_env else None
        self.calls += 1
        try:
            with warnings.catch_warnings():
                # litellm's own bookkeeping warns (pydantic serializer mismatches) on ordinary answers
                warnings.simplefilter("ignore")
                resp = litellm.completion(
                    model=self.cfg.model,
                    api_base=self.cfg.api_base,
                    api_key=key,
                    timeout=self.cfg.timeout,
                    messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
                    max_tokens=out_tokens,
                    temperature=0,
                    response_format={"type": "json_object"},
                    drop_params=True,
                    num_retries=0,
                    max_retries=0,
                )
        except Exception as exc:  # litellm maps every provider failure onto its own exception classes
            self.unavailable = True
            text = str(exc).replace(key, "[key]") if key else str(exc)
            text = redaction.redact(text)[0][:300]
            self.report.notes.append(
                f"LLM call failed ({type(exc).__name__}): {text}; no more LLM calls this cycle"
            )
            log.warning("LLM call failed: %s: %s", type(exc).__name__, text)
            raise LLMUnavailable(text) from None
        usage = getattr(resp, "usage", None)
        prompt = int(getattr(usage, "prompt_tokens", 0) or 0) or estimate_tokens(system + user)
        content = _content(resp)
        completion = int(getattr(usage, "completion_tokens", 0) or 0) or estimate_tokens(content)
        self.report.tokens += prompt + completion
        prices = self.prices()
        if prices is not None:
            self.report.cost += prompt * prices[0] + completion * prices[1]
        return content


def _content(resp: Any) -> str:
    try:
        text = resp.choices[0].message.content
    except (AttributeError, IndexError, TypeError):
        return ""
    return text if isinstance(text, str) else ""


def parse(text: str, model: type[M]) -> M:
    """The answer as `model`, or BadAnswer saying what was wrong (not what was said)."""
    text = text.strip()
    if not text:
        raise BadAnswer("the answer was empty")
    if len(text) > MAX_ANSWER:
        raise BadAnswer(f"the answer was {len(text):,} characters; at most {MAX_ANSWER:,} are read")
    fenced = FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise BadAnswer(
            f"the answer was not JSON ({type(exc).__name__} at character {getattr(exc, 'pos', '?')})"
        ) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'answer'}: {e['msg']}"
            for e in exc.errors(include_input=False, include_url=False)[:5]
        )
        raise BadAnswer(f"the JSON did not have the asked-for shape ({problems})") from None
