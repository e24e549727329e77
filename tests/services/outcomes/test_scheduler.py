"""When the scheduler starts an automatic job, and why."""

import pytest

from app.config import Settings
from app.services.outcomes.scheduler import Signals, decide

pytestmark = pytest.mark.unit


def settings(**values: object) -> Settings:
    base: dict[str, object] = {
        "retrain_policy": "auto",
        "retrain_min_new_outcomes": 100,
        "drift_psi_threshold": 0.2,
        "retrain_min_interval_seconds": 3600,
    }
    base.update(values)
    return Settings(_env_file=None, **base)  # type: ignore[arg-type]


def signals(**values: object) -> Signals:
    base: dict[str, object] = {
        "new_outcomes": 0,
        "max_psi": 0.05,
        "max_feature": "math",
        "predictions_psi": 0.05,
        "seconds_since_last_auto": None,
        "job_running": False,
    }
    base.update(values)
    return Signals(**base)  # type: ignore[arg-type]


def test_nothing_crossed_nothing_starts() -> None:
    assert decide(signals(new_outcomes=99), settings()) is None
    assert decide(signals(max_psi=None, predictions_psi=None), settings()) is None


def test_enough_new_outcomes_start_a_job_and_say_so() -> None:
    reason = decide(signals(new_outcomes=100), settings())
    assert (
        reason is not None
        and "100 new outcomes" in reason
        and "RETRAIN_MIN_NEW_OUTCOMES=100" in reason
    )


def test_input_or_prediction_drift_starts_a_job_and_names_it() -> None:
    reason = decide(signals(max_psi=0.31, max_feature="physics"), settings())
    assert reason is not None and "input drift" in reason and "physics" in reason
    reason = decide(signals(predictions_psi=0.25), settings())
    assert reason is not None and "prediction drift" in reason
    both = decide(signals(new_outcomes=500, max_psi=0.5), settings())
    assert both is not None and "new outcomes" in both and "drift" in both


def test_the_interval_and_a_running_job_hold_it_back() -> None:
    crossed = {"new_outcomes": 1000, "max_psi": 0.9}
    assert decide(signals(**crossed, seconds_since_last_auto=3599), settings()) is None
    assert decide(signals(**crossed, seconds_since_last_auto=3600), settings()) is not None
    assert decide(signals(**crossed, job_running=True), settings()) is None


class FakeLeadership:
    def __init__(self, leader: bool) -> None:
        self.leader = leader

    def hold(self) -> bool:
        return self.leader

    def release(self) -> None:
        pass


class FakeService:
    """What the scheduler reads and starts, recorded."""

    def __init__(self, new: int) -> None:
        self.new = new
        self.started: list[dict[str, object]] = []
        self.purged = 0
        self.career = type("Career", (), {"current": object()})()
        self.jobs = type(
            "Jobs",
            (),
            {
                "lock": type("Lock", (), {"holder": lambda self: None})(),
                "history": lambda self: [],
            },
        )()

    def purge(self) -> int:
        self.purged += 1
        return 0

    def new_since_active(self) -> int:
        return self.new

    def live_quality(self) -> None:
        return None

    def retrain(self, **kwargs: object) -> object:
        self.started.append(kwargs)
        return type("Job", (), {"id": "j1"})()


def test_only_the_leader_acts_and_an_auto_job_records_why() -> None:
    from app.services.outcomes.scheduler import RetrainScheduler

    config = settings(retrain_min_new_outcomes=10)
    follower = FakeService(new=50)
    RetrainScheduler(config, follower, None, FakeLeadership(False)).tick()  # type: ignore[arg-type]
    assert follower.started == [] and follower.purged == 0
    leader = FakeService(new=50)
    scheduler = RetrainScheduler(config, leader, None, FakeLeadership(True))  # type: ignore[arg-type]
    reason = scheduler.tick()
    assert reason is not None and "50 new outcomes" in reason
    assert leader.started == [{"trigger": "auto", "reason": reason, "force": False}]
    assert leader.purged == 1
    assert scheduler.tick() is None  # the interval (3600 s) holds the next one back
    manual = FakeService(new=50)
    RetrainScheduler(settings(retrain_policy="manual"), manual, None, FakeLeadership(True)).tick()  # type: ignore[arg-type]
    assert manual.started == [] and manual.purged == 1  # retention runs under either policy
