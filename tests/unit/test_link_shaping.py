"""The netem backend's queue: the configured buffer plus what is on the wire."""

from testbed.config import LinkParams
from testbed.net.links import netem_limit


def test_netem_limit_is_the_queue_on_a_link_without_delay():
    assert netem_limit(LinkParams(bandwidth=100, queue=50)) == 50


def test_netem_limit_holds_a_full_window_on_the_slowest_paper_link():
    shape = LinkParams(bandwidth=75, delay="150ms", queue=1000)
    full_size_frames_in_flight = 75e6 * 0.150 / 8 / 1514       # about 929
    assert netem_limit(shape) >= shape.queue + 2 * full_size_frames_in_flight
    assert netem_limit(shape) < shape.queue + 2 * full_size_frames_in_flight + 2


def test_netem_limit_counts_the_jitter_as_time_on_the_wire():
    calm = LinkParams(bandwidth=100, delay="50ms")
    jittery = LinkParams(bandwidth=100, delay="50ms", jitter="10ms")
    assert netem_limit(jittery) > netem_limit(calm)
