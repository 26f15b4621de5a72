"""Back-off for failed sign-ins: the wait grows per client, resets on success, and is per address."""
from medgan_ui.security.throttle import Throttle


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_delay_doubles_and_caps():
    clock = Clock()
    th = Throttle("admin sign-in", base=1.0, factor=2.0, max_delay=30.0, clock=clock)
    delays = [th.failure("1.2.3.4") for _ in range(8)]
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]
    assert th.retry_after("1.2.3.4") == 30
    assert "try again in 30 s" in th.refusal("1.2.3.4")
    clock.t += 31
    assert th.refusal("1.2.3.4") is None


def test_other_clients_unaffected_and_success_resets():
    th = Throttle("login", clock=Clock())
    for _ in range(5):
        th.failure("10.0.0.1")
    assert th.retry_after("10.0.0.2") == 0
    th.success("10.0.0.1")
    assert th.retry_after("10.0.0.1") == 0
    assert th.failure("10.0.0.1") == 1.0


def test_forgets_after_quiet_period():
    clock = Clock()
    th = Throttle("login", forget_after=60, clock=clock)
    for _ in range(4):
        th.failure("a")
    clock.t += 3600
    assert th.failure("a") == 1.0
