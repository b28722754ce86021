"""What a store keeps about a run: the run, step completions, pauses, the ledger.

Records hold plain Python values; a store encodes them with the codec
(:mod:`._codec`) when it writes and decodes them when it reads, so what
comes back is an equal copy, never the object that was written. Costs are
exact ``Decimal`` amounts, kept in the journal as decimal text by the one
translator in :mod:`._costs`.
"""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

import attrs

from ._costs import COST, cost_from_stored


@attrs.frozen
class RunRecord:
    """One run: what was asked, where it ended, what it cost.

    ``status`` is the run's status value (``running``, ``completed``,
    ``failed``, ``paused``, ``usage_limit``, ``cancelled``). ``context`` is
    the context the run started from, ``final_context`` the one it ended
    with; totals are the governor's exact committed usage.

    ``revision`` counts the times the stored record was replaced with
    :meth:`RunStore.swap_run`: a resume claims a run by replacing the
    record it read, so of two resumes that read the same revision only one
    can. A record written before revisions existed reads as revision 0.

    The lease says who drives a ``running`` run (see :mod:`._store`):
    ``owner`` is the token of the process driving it, ``lease_expires_at``
    when its lease runs out unless renewed (both ``None`` once the run is
    released), and ``epoch`` counts the claims: every write the owner makes
    carries it, and a store refuses one whose epoch is no longer the run's.
    A record written before leases existed reads as epoch 0 with no owner.
    """

    run_id: str
    pipeline_name: str
    status: str
    started_at: datetime.datetime
    input: Any
    context: Any = None
    finished_at: datetime.datetime | None = None
    output: Any = None
    final_context: Any = None
    total_cost_usd: Decimal = attrs.field(
        default=Decimal(0), converter=cost_from_stored, metadata=COST
    )
    input_tokens: int = 0
    output_tokens: int = 0
    error: str | None = None
    #: The run's usage limits, so a resumed run keeps the same budget.
    limits: Any = None
    #: Where the pipeline came from (``FILE.py:NAME``) when the command line ran it.
    target: str | None = None
    #: The sha256 of that file's bytes when the run started: a resume or replay
    #: imports the file only while it still has them (``None`` in older journals).
    target_sha256: str | None = None
    #: The paths of the human-input steps a paused run waits for.
    paused_at: tuple[str, ...] = ()
    revision: int = 0
    owner: str | None = None
    epoch: int = 0
    lease_expires_at: datetime.datetime | None = None

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def leased_at(self, moment: datetime.datetime) -> bool:
        """Whether an owner's lease on the run is still running at ``moment``."""
        return self.lease_expires_at is not None and moment < self.lease_expires_at

    def claimed_by(self, owner: str, until: datetime.datetime) -> RunRecord:
        """This record as a new owner's claim leaves it: the next epoch, leased ``until``."""
        return attrs.evolve(self, owner=owner, epoch=self.epoch + 1, lease_expires_at=until)

    def summary(self) -> RunSummary:
        """What :meth:`RunStore.list_runs` gives for this run."""
        return RunSummary(**{name: getattr(self, name) for name in SUMMARY_FIELDS})


def _optional(kind: type) -> Any:
    return attrs.validators.optional(attrs.validators.instance_of(kind))


_str = attrs.validators.instance_of(str)
_int = attrs.validators.instance_of(int)


@attrs.frozen
class RunSummary:
    """A run as a listing shows it: a :class:`RunRecord` without its values.

    No input, output, context or limits: those are the user's values, and a
    listing decodes none of them (see :func:`~trioflow.persistence.RunStore.list_runs`).
    Each field is checked on the way in, so a damaged record is refused
    here rather than failing whatever prints it.
    """

    run_id: str = attrs.field(validator=_str)
    pipeline_name: str = attrs.field(validator=_str)
    status: str = attrs.field(validator=_str)
    started_at: datetime.datetime = attrs.field(
        validator=attrs.validators.instance_of(datetime.datetime)
    )
    finished_at: datetime.datetime | None = attrs.field(
        default=None, validator=_optional(datetime.datetime)
    )
    total_cost_usd: Decimal = attrs.field(default=Decimal(0), converter=cost_from_stored)
    input_tokens: int = attrs.field(default=0, validator=_int)
    output_tokens: int = attrs.field(default=0, validator=_int)
    error: str | None = attrs.field(default=None, validator=_optional(str))
    target: str | None = attrs.field(default=None, validator=_optional(str))
    paused_at: tuple[str, ...] = attrs.field(
        default=(),
        validator=attrs.validators.deep_iterable(_str, attrs.validators.instance_of(tuple)),
    )
    revision: int = attrs.field(default=0, validator=_int)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


#: The fields a summary copies from its run record.
SUMMARY_FIELDS = tuple(field.name for field in attrs.fields(RunSummary))


@attrs.frozen
class StepRecord:
    """The completion record of one step path in one run.

    Written once the step (leaf or composite) has finished; a step whose
    record is committed never runs again, even after a crash. ``children``
    lists the paths of the records that make up a composite step's
    history. ``breach`` is set when a usage limit stopped the step.
    """

    run_id: str
    path: str
    name: str
    success: bool
    output: Any
    attempts: int
    cost_usd: Decimal = attrs.field(converter=cost_from_stored, metadata=COST)
    input_tokens: int
    output_tokens: int
    patch: tuple[Any, ...] = ()
    latency_s: float = 0.0
    feedback: str | None = None
    metadata: dict[str, Any] = attrs.field(factory=dict)
    children: tuple[str, ...] = ()
    breach: str | None = None
    #: What each model call of an agent step replied, by ledger key (for replay).
    replies: tuple[tuple[str, Any], ...] = ()


@attrs.frozen
class PauseRecord:
    """A human-input step waiting at ``path``: its message and the input's JSON schema.

    ``answer`` is the validated human input once given (``answered_at`` set).
    """

    run_id: str
    path: str
    message: str
    input_schema: dict[str, Any]
    created_at: datetime.datetime
    answer: Any = None
    answered_at: datetime.datetime | None = None


@attrs.frozen
class LedgerEntry:
    """What one agent call committed, keyed by its idempotency key.

    ``key`` is ``<path>#<attempt>#<call>``: a call that runs again after a
    crash writes the same key, so it replaces its earlier entry instead of
    counting twice.
    """

    run_id: str
    key: str
    path: str
    cost_usd: Decimal = attrs.field(converter=cost_from_stored, metadata=COST)
    input_tokens: int
    output_tokens: int
