"""The loopback Earth Engine itself, through the real ``earthengine-api`` client: footprints and partial
scenes, unmask and type promotion, pagination, S1 slices, faults, quota records and the size limit."""

from __future__ import annotations

import threading
from collections import Counter

import ee
import numpy as np
import pytest
from google.oauth2 import service_account
from pyproj import Transformer
from shapely.geometry import Polygon, box, mapping, shape

from noldo.testing.earthengine import (
    MAX_BYTES,
    PAGE_SIZE,
    RATE_LIMITED,
    Catalogue,
    FakeEarthEngine,
    Faults,
    constant_type,
    union,
)

BBOX = (11.3, 48.0, 11.5, 48.15)
S2, DW, CS, S1 = ("COPERNICUS/S2_HARMONIZED", "GOOGLE/DYNAMICWORLD/V1", "GOOGLE/CLOUD_SCORE_PLUS/V1/S2_HARMONIZED",
                  "COPERNICUS/S1_GRD")
TO_UTM = Transformer.from_crs(4326, 32632, always_xy=True)
TO_LONLAT = Transformer.from_crs(32632, 4326, always_xy=True)


@pytest.fixture(scope="module")
def catalogue():
    return Catalogue(BBOX, "2020-01-01", "2020-07-01", 32632)


@pytest.fixture(scope="module")
def server(catalogue, tmp_path_factory):
    """One fake for the module (stopping a server takes half a second); tests configure it through
    :func:`configure`."""
    with FakeEarthEngine(catalogue) as fake:
        fake.key = fake.service_account_key(tmp_path_factory.mktemp("ee"))
        yield fake


@pytest.fixture
def fake(server):
    """The module's fake at its defaults, the ee client initialised against it (no client-side retries)."""
    configure(server)
    credentials = service_account.Credentials.from_service_account_file(
        str(server.key), scopes=["https://www.googleapis.com/auth/earthengine"])
    ee.Initialize(credentials, url=server.url, project="noldo-test")
    ee.data.setMaxRetries(0)
    return server


def configure(fake, faults=None, max_bytes=MAX_BYTES, latency=0.0, page_size=PAGE_SIZE, max_concurrent=None):
    """Set the fake's options (those of its constructor) and clear its records."""
    fake.faults, fake.max_bytes, fake.latency = faults or Faults(), max_bytes, latency
    fake.page_size, fake.max_concurrent = page_size, max_concurrent
    fake.requests.clear()
    fake.per_second.clear()
    fake.max_in_flight = 0


def grid_at(lon, lat, size=64):
    """A 10 m UTM 32N grid of ``size``² pixels centred (to 10 m) on lon/lat, and its lon/lat outline."""
    x, y = TO_UTM.transform(lon, lat)
    x0, y0 = round(x, -1) - 5 * size, round(y, -1) + 5 * size
    grid = {"dimensions": {"width": size, "height": size}, "crsCode": "EPSG:32632",
            "affineTransform": {"scaleX": 10, "shearX": 0, "translateX": x0, "shearY": 0, "scaleY": -10,
                                "translateY": y0}}
    corners = [(x0, y0), (x0 + 10 * size, y0), (x0 + 10 * size, y0 - 10 * size), (x0, y0 - 10 * size)]
    return grid, Polygon([TO_LONLAT.transform(*c) for c in corners])


def centres_lonlat(grid):
    t, n = grid["affineTransform"], grid["dimensions"]["width"]
    cols, rows = np.meshgrid(np.arange(n) + 0.5, np.arange(n) + 0.5)
    return TO_LONLAT.transform(t["translateX"] + 10 * cols, t["translateY"] - 10 * rows)


def pixels(image, grid, bands=None):
    params = {"expression": image, "fileFormat": "NUMPY_NDARRAY", "grid": grid}
    if bands:
        params["bandIds"] = bands
    return ee.data.computePixels(params)


def listing(collection, region, start="2020-01-01T00:00:00Z", end="2020-07-01T00:00:00Z"):
    return ee.data.listImages({"parent": collection, "startTime": start, "endTime": end,
                               "region": mapping(region)})["images"]


def test_a_partial_scene_is_unimaged_outside_its_listed_footprint(fake):
    grid, sample = grid_at(11.4, 48.075)  # on the slanted swath edge through the middle of the bbox
    scenes = listing(S2, sample)
    partial = [s for s in scenes if not shape(s["geometry"]).contains(sample)]
    whole = [s for s in scenes if shape(s["geometry"]).contains(sample)]
    assert partial and whole, "the own-zone series has swath-edge granules beside whole ones"
    scene = partial[0]
    footprint = shape(scene["geometry"])
    assert 0.2 < footprint.intersection(sample).area / sample.area < 0.8
    lon, lat = centres_lonlat(grid)
    inside = np.array([footprint.contains(shape({"type": "Point", "coordinates": p}))
                       for p in zip(lon.ravel(), lat.ravel(), strict=True)]).reshape(lon.shape)

    default = pixels(ee.Image(scene["id"]).select(["B4"]).unmask(255), grid)["B4"]
    assert (default[~inside] == 0).all(), "sameFootprint (the default) keeps the outside masked: served 0"
    assert (default[inside] >= 1000).all()
    filled = pixels(ee.Image(scene["id"]).select(["B4"]).unmask(255, False), grid)["B4"]
    assert (filled[~inside] == 255).all() and (filled[inside] == default[inside]).all()
    x, y = TO_UTM.transform(lon, lat)
    assert (fake.catalogue.imaged(scene["id"], x, y, 32632) == inside).all()

    index = scene["id"].rsplit("/", 1)[1]
    twins = [s for collection in (DW, CS) for s in listing(collection, sample) if s["id"].endswith(index)]
    assert any(t["id"].startswith(CS) for t in twins), "every S2 image has its Cloud Score+ image"
    assert all(shape(t["geometry"]).equals(footprint) for t in twins), "twins share the S2 footprint"
    cs = pixels(ee.Image(f"{CS}/{index}").select(["cs"]), grid)["cs"]
    assert cs.dtype == np.dtype("<f4") and (cs[~inside] == 0).all() and (cs >= 0).all() and (cs <= 1).all()


def test_unmask_and_casts_promote_types_as_earth_engine(fake, catalogue):
    grid, _ = grid_at(11.42, 48.03)
    s1 = next(i.id for i in catalogue.images[S1] if "VH" in i.bands)
    s2 = catalogue.images[S2][0].id
    vv = ee.Image(s1).select(["VV"])
    assert pixels(vv, grid).dtype["VV"] == np.dtype("<f8"), "S1 GRD bands are doubles"
    assert pixels(vv.toFloat().unmask(-9999.5), grid).dtype["VV"] == np.dtype("<f8")
    assert pixels(vv.unmask(-9999).toFloat(), grid).dtype["VV"] == np.dtype("<f4")
    assert pixels(vv.toFloat().unmask(-9999), grid).dtype["VV"] == np.dtype("<f4")
    b4 = ee.Image(s2).select(["B4"])
    assert pixels(b4.unmask(0), grid).dtype["B4"] == np.dtype("<u2")
    assert pixels(b4.unmask(-9999), grid).dtype["B4"] == np.dtype("<i4"), "uint16 ∪ int16 → int32"
    assert pixels(b4.toInt16().unmask(-1), grid).dtype["B4"] == np.dtype("<i2")
    assert pixels(b4.multiply(0.5).round(), grid).dtype["B4"] == np.dtype("<f8")
    label = ee.Image(catalogue.images[DW][0].id).select(["label"])
    cat = ee.Image.cat([b4, label.unmask(255, False), vv.toFloat(), ee.Image.constant(3)])
    answer = pixels(cat, grid)
    assert answer.dtype == np.dtype([("B4", "<u2"), ("label", "u1"), ("VV", "<f4"), ("constant", "u1")])
    assert (answer["constant"] == 3).all() and set(np.unique(answer["label"])) <= set(range(9)) | {255}
    with pytest.raises(ee.EEException, match="Pattern 'B99' did not match any bands"):
        pixels(ee.Image(s2).select(["B99"]), grid)
    with pytest.raises(ee.EEException, match="does not implement Image.focal_max"):
        pixels(b4.focal_max(), grid)


def test_union_rules():
    d = np.dtype
    assert constant_type(255) == d("u1") and constant_type(-9999) == d("<i2") and constant_type(0) == d("u1")
    assert constant_type(-9999.5) == d("<f8") and constant_type(70000) == d("<u4")
    assert union(d("<f4"), d("<u2")) == d("<f4") and union(d("<f4"), d("<i4")) == d("<f8")
    assert union(d("<u2"), d("<i2")) == d("<i4") and union(d("u1"), d("i1")) == d("<i2")
    assert union(d("<f8"), d("u1")) == d("<f8") and union(d("<f4"), d("<f4")) == d("<f4")


def test_listings_are_paginated(fake, catalogue):
    configure(fake, page_size=25)
    everything = [i.id for i in catalogue.images[S2]]
    first = ee.data.listImages({"parent": S2, "pageSize": 1000})
    assert len(first["images"]) == 25 and first["nextPageToken"], "the server page caps what is asked for"
    ids, token, pages = [], None, 0
    while True:
        params = {"parent": S2, "pageSize": 10, **({"pageToken": token} if token else {})}
        page = ee.data.listImages(params)
        ids += [a["id"] for a in page["images"]]
        pages += 1
        if not (token := page.get("nextPageToken")):
            break
    assert ids == everything and pages == -(-len(everything) // 10)
    before = fake.requests["listImages"]
    looped = ee.data.listImages({"parent": S2})  # no pageSize: the client follows the tokens itself
    assert [a["id"] for a in looped["images"]] == everything
    assert fake.requests["listImages"] - before == -(-len(everything) // 25), "one count per HTTP page"
    for other in ({"startTime": "2020-03-01T00:00:00Z", "pageToken": first["nextPageToken"]},
                  {"pageToken": "not-a-token"}):  # a token continues only the listing it was made for
        with pytest.raises(ee.EEException, match="Invalid page token"):
            ee.data.listImages({"parent": S2, "pageSize": 10, **other})
    basic = ee.data.listAssets({"parent": S2, "view": "BASIC", "pageSize": 5})["assets"]
    assert [set(a) for a in basic] == [{"type", "name", "id"}] * 5


def test_s1_passes_are_slices_whose_mosaic_covers_a_sample(fake, catalogue):
    lat = BBOX[1] + (BBOX[3] - BBOX[1]) / 2  # the boundary of the two slices of a 2-slice pass
    grid, sample = grid_at(11.4, lat)
    slices = listing(S1, sample)
    passes: dict[int, list] = {}
    for s in slices:
        assert s["endTime"] > s["startTime"]
        assert s["id"].startswith(f"{S1}/S1A_IW_GRDH_1S")
        passes.setdefault(s["properties"]["missionDataTakeID"], []).append(s)
    two = next(p for p in passes.values() if p[0]["properties"]["totalSlices"] == 2)
    assert sorted(s["properties"]["sliceNumber"] for s in two) == [1, 2]
    assert len({s["properties"]["orbitNumber_start"] for s in two}) == 1
    assert all(not shape(s["geometry"]).contains(sample) for s in two)
    two.sort(key=lambda s: s["startTime"])
    assert two[0]["endTime"] == two[1]["startTime"], "consecutive slices of one datatake"

    def unimaged(image):
        return pixels(image.select(["VV"]).unmask(-9999, False).toFloat(), grid)["VV"] == -9999

    each = [unimaged(ee.Image(s["id"])) for s in two]
    assert all(0.3 < m.mean() < 0.7 for m in each), "each slice images part of the sample"
    mosaic = unimaged(ee.ImageCollection([ee.Image(s["id"]) for s in two]).mosaic())
    assert mosaic.mean() < 0.05 and (mosaic == (each[0] & each[1])).all(), "only the data's own mask remains"
    joined = pixels(ee.ImageCollection([ee.Image(s["id"]).select(["VV"]) for s in two]).mosaic(), grid)["VV"]
    for s, missing in zip(two, each, strict=True):
        vv = pixels(ee.Image(s["id"]).select(["VV"]), grid)["VV"]
        assert (vv[~missing] == joined[~missing]).all(), "one acquisition: the slices' values join seamlessly"
    # listImages keeps only slices that end before the window does: the first slice, not the second
    window = listing(S1, sample, two[0]["startTime"], two[1]["endTime"])
    assert [s["id"] for s in window] == [two[0]["id"]]


@pytest.mark.parametrize(("kind", "status", "message"), [
    ("400-timeout", 400, "Computation timed out."),
    ("503", 503, "The service is currently unavailable."),
    ("429-rate", 429, RATE_LIMITED),
    ("429", 429, "Too many concurrent aggregations."),
])
def test_error_faults_answer_status_and_message(fake, catalogue, kind, status, message):
    configure(fake, faults=Faults(rate=1.0, kinds=(kind,)))
    grid, sample = grid_at(11.42, 48.03)
    for call in (lambda: listing(S2, sample), lambda: pixels(ee.Image(catalogue.images[S2][0].id), grid)):
        with pytest.raises(ee.EEException) as raised:
            call()
        assert str(raised.value) == message
        assert raised.value.__context__.resp.status == status
    assert fake.faults.counts[kind] == 2


def test_memory_and_byteorder_faults(fake, catalogue):
    grid, sample = grid_at(11.42, 48.03)
    s2 = catalogue.images[S2][0].id
    image = ee.Image.cat([ee.Image(s2).select(["B4", "B8"]), ee.Image(catalogue.images[S1][0].id).select(["VV"])])
    configure(fake, faults=Faults(rate=1.0, kinds=("400-memory",)))
    assert listing(S2, sample), "listings never run out of memory"
    with pytest.raises(ee.EEException, match=r"^User memory limit exceeded\.$") as raised:
        pixels(image, grid)
    assert raised.value.__context__.resp.status == 400
    single = {b: pixels(image, grid, [b]) for b in ("B4", "B8", "VV")}
    assert fake.faults.counts["400-memory"] == 1, "one band never runs out of memory"
    configure(fake, faults=Faults(rate=1.0, kinds=("byteorder",)))
    answer = pixels(image, grid)
    assert answer.dtype == np.dtype([("B4", ">u2"), ("B8", ">u2"), ("VV", ">f8")])
    for band, clean in single.items():
        np.testing.assert_array_equal(answer[band], clean[band])
    assert pixels(ee.Image(catalogue.images[DW][0].id).select(["label"]), grid).dtype == np.dtype([("label", "u1")])
    assert fake.faults.counts["byteorder"] == 1, "single bytes have no byte order"


def test_faults_are_the_same_whatever_the_order_of_requests():
    keys = [f"request {i}" for i in range(40)]
    forward = Faults(rate=0.3, kinds=("429", "503"), seed=2)
    backward = Faults(rate=0.3, kinds=("429", "503"), seed=2)
    drawn = {k: forward.draw(k) for k in keys}
    assert {k: backward.draw(k) for k in reversed(keys)} == drawn and 4 < sum(map(bool, drawn.values())) < 20
    retries = {forward.draw(keys[0]) for _ in range(20)}
    assert None in retries and retries - {None}, "each retry of a request is a new draw"


def test_requests_in_flight_and_per_second_are_recorded(fake, catalogue):
    configure(fake, latency=0.3)
    grid, sample = grid_at(11.42, 48.03)
    errors: list[str] = []

    def request(i):
        try:
            if i % 2:
                listing(S2, sample)
            else:
                pixels(ee.Image(catalogue.images[S2][0].id).select(["B4"]), grid)
        except ee.EEException as exc:
            errors.append(str(exc))

    def burst():
        threads = [threading.Thread(target=request, args=(i,)) for i in range(5)]
        [t.start() for t in threads]
        [t.join() for t in threads]

    burst()
    assert fake.max_in_flight == 5, "all five were in flight at once"
    assert isinstance(fake.per_second, Counter) and sum(fake.per_second.values()) == 5
    assert all(isinstance(second, int) for second in fake.per_second) and not errors
    fake.max_concurrent = 3
    burst()
    assert errors == [RATE_LIMITED] * 2, "beyond max_concurrent the quota answers 429"
    assert sum(fake.per_second.values()) == 10


def test_request_size_counts_a_mask_byte_per_pixel_and_band(fake, catalogue):
    s1 = ee.Image(catalogue.images[S1][0].id).select(["VV"])  # float64: 8 bytes a pixel, 9 with the mask
    grid, _ = grid_at(11.42, 48.03)
    grid["dimensions"] = {"width": 2048, "height": 3071}
    assert 2048 * 3071 * 8 < 48 * 2**20 < 2048 * 3071 * 9
    with pytest.raises(ee.EEException) as raised:
        pixels(s1, grid)
    assert str(raised.value) == (f"Total request size ({2048 * 3071 * 9} bytes) must be less than or equal to "
                                 "50331648 bytes.")
    assert raised.value.__context__.resp.status == 400


def test_request_size_limit_is_inclusive(fake, catalogue):
    configure(fake, max_bytes=64 * 64 * 3)  # one uint16 band of 64×64 with its mask
    grid, _ = grid_at(11.42, 48.03)
    b4 = ee.Image(catalogue.images[S2][0].id).select(["B4"])
    assert pixels(b4, grid).shape == (64, 64)
    grid["dimensions"]["height"] = 65
    with pytest.raises(ee.EEException, match=r"Total request size \(12480 bytes\)"):
        pixels(b4, grid)


def test_partial_responses_keep_the_selected_fields_and_refuse_unknown_ones(fake, catalogue, monkeypatch):
    """``fields`` (Google's partial-response parameter) as our client sends it: the same images, page by page,
    with only the selected fields; a selection naming a field the message lacks is a 400."""
    from noldo.sources import earthengine

    configure(fake, page_size=25)
    monkeypatch.setenv("NOLDO_EE_SERVICE_ACCOUNT_KEY", str(fake.key))
    settings = earthengine.settings_from("noldo-test", fake.url)
    region = {"type": "Polygon", "coordinates": [[[BBOX[0], BBOX[1]], [BBOX[2], BBOX[1]], [BBOX[2], BBOX[3]],
                                                  [BBOX[0], BBOX[3]], [BBOX[0], BBOX[1]]]]}
    before = fake.requests["listImages"]
    ours = earthengine.list_images(settings, S2, "2020-01-01T00:00:00Z", "2020-07-01T00:00:00Z", region)
    full = ee.data.listImages({"parent": S2, "startTime": "2020-01-01T00:00:00Z", "endTime": "2020-07-01T00:00:00Z",
                               "region": region})["images"]
    assert [a["id"] for a in ours] == [a["id"] for a in full] and len(ours) > 25
    assert fake.requests["listImages"] - before == 2 * -(-len(ours) // 25), "both followed every page"
    assert {key for a in ours for key in a} == {"id", "startTime", "geometry", "properties"}
    from noldo.sources.scenes import granule_epsg

    assert all(granule_epsg(a["id"]) == int(b["bands"][0]["grid"]["crsCode"].split(":")[1])
               for a, b in zip(ours, full, strict=True)), "the tile names the CRS the bands are in"
    assert ours[0]["properties"] == full[0]["properties"], "a map field is kept whole"
    with pytest.raises(ee.EEException, match="Invalid field selection"):
        ee.data.listAssets({"parent": S2, "pageSize": 5, "fields": "assets(id,cloudCover)"})


def test_an_unimaged_sample_is_not_listed(fake):
    _, far = grid_at(11.4, 49.5)  # north of every footprint
    assert listing(S2, far) == [] and listing(S1, far) == []
    assert any(shape(s["geometry"]).contains(box(*BBOX)) for s in listing(S2, box(*BBOX)))
