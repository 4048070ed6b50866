"""Fixtures for WAHA tests: a real simulator subprocess and a real webhook receiver."""
import pytest

from tests.waha.simkit import SimulatorProcess, WebhookReceiver


@pytest.fixture
def simulator_factory(tmp_path):
    """Start simulators with custom options; all are stopped at teardown.

    simulator_factory(engine="core", extra_args=["--qr-rotate-seconds", "1"], env={...}, data_dir=path)
    """
    started: list[SimulatorProcess] = []

    def make(data_dir=None, **kwargs) -> SimulatorProcess:
        if data_dir is None:
            data_dir = tmp_path / f"sim-data-{len(started)}"
        kwargs.setdefault("extra_args", ["--starting-seconds", "0.1"])
        sim = SimulatorProcess(data_dir, **kwargs)
        started.append(sim)
        return sim.start()

    yield make
    for sim in started:
        sim.stop()


@pytest.fixture
def simulator(simulator_factory) -> SimulatorProcess:
    """A plus-engine simulator with /_sim/ control, an API key and a data dir; .base_url, .api_key, .restart()."""
    return simulator_factory()


@pytest.fixture
def webhook_receiver():
    """A webhook receiver on 127.0.0.1 whose hooks are signed with the key 'whsec-test'."""
    receiver = WebhookReceiver(hmac_key="whsec-test")
    yield receiver
    receiver.close()


class SignalRecorder:
    """Records every call of the waha signals: .calls[name] is a list of kwargs dicts."""

    NAMES = ("session_status_changed", "message_received", "message_ack")

    def __init__(self) -> None:
        self.calls = {name: [] for name in self.NAMES}
        self._receivers = {}

    def connect(self) -> None:
        """Listen to the three signals."""
        from waha import signals

        for name in self.NAMES:
            def receiver(sender, _name=name, **kwargs):
                kwargs.pop("signal", None)
                self.calls[_name].append(kwargs)

            self._receivers[name] = receiver
            getattr(signals, name).connect(receiver, weak=False)

    def disconnect(self) -> None:
        """Stop listening."""
        from waha import signals

        for name, receiver in self._receivers.items():
            getattr(signals, name).disconnect(receiver)

    def find(self, name: str, **filters) -> dict:
        """The first call of signal `name` whose kwargs match the filters."""
        for call in self.calls[name]:
            if all(call.get(key) == value for key, value in filters.items()):
                return call
        raise AssertionError(f"no {name} call with {filters}; calls: {self.calls[name]}")


@pytest.fixture
def waha_signals():
    """Record the waha signals during a test (reconstructed by the simulator helper, see the report)."""
    recorder = SignalRecorder()
    recorder.connect()
    yield recorder
    recorder.disconnect()
