"""What a round records about itself beside its status and metrics (``Round.params``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from ml import AskKind, AskPolicy


class RoundParams(BaseModel):
    """A round's parameters, filled in as it goes: chosen when it starts (seed, ask policy, the
    asks), then what pushing and closing did. Round 0 (the bootstrap) has no asks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 0
    ask: AskPolicy | None = None  # the policy asked for (STAGED stays STAGED here)
    ask_used: AskPolicy | None = None  # what the round actually asked (STAGED resolved)
    mask_share: float | None = None
    model_version_id: int | None = None  # the version whose scores chose the batch
    asks: tuple[tuple[int, AskKind], ...] = ()  # (image id, what was asked), in rank order
    pushed: int | None = None  # tasks pushed to Label Studio
    retired_tasks: int | None = None  # earlier rounds' unanswered tasks removed
    job_id: int | None = None  # the train job that closes the round
    pseudo_normal: int | None = None  # pool images trained on as normal
    refine_keep: float | None = None  # the bootstrap's refinement fraction
    min_defects_supervised: int | None = None  # the rule in force when the round closed

    def asked_ids(self) -> set[int]:
        """The images this round asked about."""
        return {image_id for image_id, _ in self.asks}

    def policy(self) -> AskPolicy | None:
        """What this round asked for (the resolved policy; None for round 0)."""
        return self.ask_used or self.ask
