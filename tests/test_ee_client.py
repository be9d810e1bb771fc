"""The Earth Engine client's parts that need no server: the retry table, the quota, request cutting, decoding."""

from __future__ import annotations

import io
import threading
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import shapely
from shapely.geometry import box

from noldo.sources import earthengine, ee_errors, ee_http
from noldo.sources.ee_quota import Quota, RateLimiter
from noldo.sources.scenes import Scene, coverage, granule_epsg, merge_passes, touching, within


@pytest.mark.parametrize(("status", "message", "action"), [
    (429, "Too many concurrent aggregations.", "retry"),
    (429, "Too Many Requests: Request was rejected because the request rate or concurrency limit was exceeded.",
     "retry"),
    (503, "The service is currently unavailable.", "retry"),
    (500, "An internal error has occurred.", "retry"),
    (400, "Computation timed out.", "retry"),
    (400, "User memory limit exceeded.", "split"),
    (400, "Image.load: Image asset 'X' not found.", "reject"),
    (404, "Not found.", "reject"),
    (403, "Permission denied.", "stop"),
    (401, "Request had invalid authentication credentials.", "stop"),
    (None, "Too many concurrent aggregations.", "retry"),
    (None, "Computation timed out.", "retry"),
    (None, "Something else.", "stop"),
])
def test_the_retry_table_decides_by_status_and_message(status, message, action):
    assert ee_errors.action(status, message).action == action


def test_the_retry_table_is_printable():
    rows = ee_errors.table()
    assert ("400 “Computation timed out.”", "retry", "the server ran out of time under load") in rows
    assert {action for _, action, _ in rows} == {"retry", "split", "reject", "stop"}


def test_rate_limiter_shares_never_exceed_the_rate_in_any_second():
    for rate, processes in ((10, 3), (100, 8), (2, 5), (7, 1)):
        share = RateLimiter.share(rate, processes)
        assert processes * share.count / share.window <= rate
    limiter = RateLimiter(5, 0.3)
    sent: list[float] = []

    def worker():
        for _ in range(6):
            limiter.wait()
            sent.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(3)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    sent.sort()
    assert len(sent) == 18
    assert all(sum(1 for s in sent if t <= s < t + 0.3) <= 5 for t in sent), "5 per 0.3 s, in every window"


def test_quota_caps_requests_in_flight():
    quota, flying, peak, lock = Quota(3, 1000.0), [0], [0], threading.Lock()

    def request():
        with quota.request():
            with lock:
                flying[0] += 1
                peak[0] = max(peak[0], flying[0])
            time.sleep(0.02)
            with lock:
                flying[0] -= 1

    threads = [threading.Thread(target=request) for _ in range(12)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert peak[0] == 3


def test_split_request_counts_the_mask_byte_and_mixes_dtypes(monkeypatch):
    monkeypatch.setattr(earthengine, "MAX_REQUEST_BYTES", 10 * 10 * 10)  # 1000 bytes
    # with the mask byte a uint16 band takes 300 bytes: three fit (900), a fourth does not
    blocks = earthengine.split_request(10, 10, [2, 2, 2, 2, 4, 1, 1])
    assert [(b.bands.start, b.bands.stop) for b in blocks] == [(0, 3), (3, 6), (6, 7)]  # 300+500+200 fits
    assert all(b.rows == slice(0, 10) and b.cols == slice(0, 10) for b in blocks)


def test_split_request_windows_a_huge_band(monkeypatch):
    monkeypatch.setattr(earthengine, "MAX_REQUEST_SIDE", 100)
    blocks = earthengine.split_request(250, 130, 4, 3)
    covered = np.zeros((3, 250, 130), int)
    for b in blocks:
        covered[b.bands, b.rows, b.cols] += 1
        assert b.rows.stop - b.rows.start <= 100 and b.cols.stop - b.cols.start <= 100
    assert (covered == 1).all()


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_decode_npy_views_the_answer_and_checks_it():
    answer = np.zeros((3, 4), dtype=[("a", ">u2"), ("b", "<f4")])
    answer["a"], answer["b"] = 7, 0.5
    decoded = earthengine.decode_npy(npy(answer))
    assert decoded.dtype == answer.dtype and np.array_equal(decoded, answer)
    dtypes = {"a": np.dtype("uint16"), "b": np.dtype("float32")}
    earthengine._check_answer(decoded, ["a", "b"], (3, 4), dtypes)  # byte order may differ
    out = np.empty((3, 4), "uint16")
    out[:] = decoded["a"]
    assert (out == 7).all() and out.dtype.byteorder in "=<|"
    with pytest.raises(earthengine.BadAnswer, match="float64 for b"):
        earthengine._check_answer(earthengine.decode_npy(npy(answer.astype([("a", "<u2"), ("b", "<f8")]))),
                                  ["a", "b"], (3, 4), dtypes)
    with pytest.raises(earthengine.BadAnswer, match="shape"):
        earthengine._check_answer(decoded[:2], ["a", "b"], (3, 4), dtypes)
    with pytest.raises(ValueError):
        earthengine.decode_npy(npy(answer)[:-10])  # a torn body is retried as a transport failure


@pytest.mark.parametrize(("index", "epsg"), [
    ("20200418T101021_20200418T101647_T31UFU", 32631),
    ("20200418T101021_20200418T101647_T33TUM", 32633),
    ("20200418T101021_20200418T101647_T56HLH", 32756),
    ("20200418T101021_20200418T101647_T01CDS", 32701),
    ("no-granule", None),
])
def test_granule_zone(index, epsg):
    assert granule_epsg(index) == epsg


def test_slices_of_a_pass_become_one_scene():
    t0 = datetime(2021, 4, 2, 17, 0, tzinfo=UTC)
    props = {"platform_number": "A", "missionDataTakeID": 300}
    slices = [Scene(f"S1/slice{k}", t0.replace(second=25 * k), 32632, {**props, "sliceNumber": k + 1},
                    box(11.0, 48.0 + 0.1 * k, 11.5, 48.1 + 0.1 * k)) for k in (1, 0)]
    other = Scene("S1/other", t0.replace(day=8), 32632, {"platform_number": "A", "missionDataTakeID": 301},
                  box(11.0, 48.0, 11.5, 48.1))
    merged = merge_passes([*slices, other])
    assert [s.assets for s in merged] == [("S1/slice0", "S1/slice1"), ("S1/other",)]
    sample = box(11.2, 48.09, 11.3, 48.11)  # straddles the slice boundary at 48.1
    assert coverage(merged[0], sample) == 1.0 and coverage(slices[0], sample) < 1
    assert merged[0].label == "slice0+slice1"


def test_scenes_in_season_windows_and_touching_a_sample_are_those_a_plain_filter_keeps():
    rng = np.random.default_rng(3)
    t0 = datetime(2020, 1, 1, tzinfo=UTC)
    hours, lons = rng.integers(0, 24 * 400, 300), rng.uniform(10.5, 11.5, 300)
    scenes = sorted((Scene(f"S/{k}", t0 + timedelta(hours=int(hours[k])), 32632, {},
                           None if k % 7 == 0 else box(lons[k], 48.0, lons[k] + 0.2, 48.2)) for k in range(300)),
                    key=lambda s: (s.time, s.id))
    windows = [(t0 + timedelta(days=d), t0 + timedelta(days=d + 30)) for d in (20, 40, 200, 330)]  # two overlap
    for slack in (timedelta(0), timedelta(days=15)):
        expected = [s for s in scenes if any(a - slack <= s.time < b + slack for a, b in windows)]
        assert within(scenes, windows, slack) == expected and expected
    sample = box(11.0, 48.05, 11.05, 48.1)
    shapely.prepare(sample)
    expected = [s for s in scenes if s.footprint is None or s.footprint.intersects(sample)]
    assert touching(scenes, sample) == expected and 0 < len(expected) < len(scenes)
    assert touching([], sample) == []


def test_the_readme_shows_the_retry_table():
    from pathlib import Path

    from noldo.markdown import table

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    shown = "\n".join("  " + line for line in table(("failure", "noldo", "why"), ee_errors.table()).splitlines())
    assert shown in readme, "regenerate the README's retry table from noldo.sources.ee_errors.table()"


def test_refusals_carry_the_status_and_the_servers_message():
    body = b'{"error": {"code": 400, "message": "Computation timed out.", "status": "INVALID_ARGUMENT"}}'
    refusal = ee_http.refusal(400, body)
    assert (refusal.status, str(refusal)) == (400, "Computation timed out.")
    assert earthengine._rule(refusal).action == "retry"
    proxy_page = ee_http.refusal(502, b"<html>\n<title>502 Bad Gateway</title>")  # a proxy's, not Google's
    assert (proxy_page.status, str(proxy_page)) == (502, "<html>") and earthengine._rule(proxy_page).action == "retry"


def test_the_pixel_pool_follows_the_proxy_environment(monkeypatch):
    import urllib3

    for name in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert type(ee_http.pool_for(earthengine.HIGH_VOLUME_URL, 4, 300)) is urllib3.PoolManager
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    pool = ee_http.pool_for(earthengine.HIGH_VOLUME_URL, 4, 300)
    assert isinstance(pool, urllib3.ProxyManager) and pool.proxy.host == "proxy.example"
    monkeypatch.setenv("NO_PROXY", "googleapis.com")
    assert type(ee_http.pool_for(earthengine.HIGH_VOLUME_URL, 4, 300)) is urllib3.PoolManager
