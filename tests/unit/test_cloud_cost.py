"""The cost and time estimate shown before an AWS job is submitted.

Spot prices: moto's describe_spot_price_history answers with a dummy price (FACTS.md), so the
price-picking logic runs on botocore's Stubber with AWS-shaped histories; one test calls the
moto server for real to check the call shape and parsing. The arithmetic is checked against
a computation written out here from the inputs and the bundled throughput table.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from importlib import resources
from pathlib import Path

import boto3
import pytest
from botocore.stub import ANY, Stubber

from tests.helpers.aws_fixture import MotoServer
from vsr_desktop.backends.aws import cost
from vsr_desktop.backends.aws.errors import CloudError, CredentialsError
from vsr_desktop.core.errors import InputError

REGION = "eu-west-1"
MODEL = "realesr-animevideov3"
HOUR_24FPS = 24 * 3600


def _table() -> dict:
    path = resources.files("vsr_desktop.resources") / "cloud" / "gpu_throughput.json"
    return json.loads(path.read_text(encoding="utf-8"))


# --- Spot prices -----------------------------------------------------------------------------


def _stubbed_session(monkeypatch: pytest.MonkeyPatch) -> tuple[boto3.session.Session, Stubber]:
    session = boto3.session.Session(
        region_name=REGION, aws_access_key_id="AKIAEXAMPLE0000000", aws_secret_access_key="x" * 40
    )
    ec2 = session.client("ec2", region_name=REGION)
    monkeypatch.setattr(session, "client", lambda *args, **kwargs: ec2)
    return session, Stubber(ec2)


def _price(
    itype: str, zone: str, price: float, age_h: float, product: str = "Linux/UNIX"
) -> dict[str, object]:
    return {
        "InstanceType": itype,
        "AvailabilityZone": zone,
        "SpotPrice": f"{price:.6f}",
        "ProductDescription": product,
        "Timestamp": datetime.now(timezone.utc) - timedelta(hours=age_h),
    }


def test_spot_price_is_the_latest_per_zone_then_the_cheapest_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Stubber: real Spot prices are a boundary nothing here reaches (moto returns a dummy)."""
    session, stub = _stubbed_session(monkeypatch)
    types = ["g4dn.xlarge", "g5.xlarge", "g6.xlarge"]
    request = {"InstanceTypes": types, "ProductDescriptions": ANY, "StartTime": ANY}
    stub.add_response(
        "describe_spot_price_history",
        {
            "NextToken": "page-2",
            "SpotPriceHistory": [
                _price("g4dn.xlarge", "eu-west-1a", 0.31, age_h=1),
                _price("g4dn.xlarge", "eu-west-1a", 0.10, age_h=5),  # older: superseded by 0.31
                _price("g4dn.xlarge", "eu-west-1b", 0.24, age_h=2),
                _price("g4dn.xlarge", "eu-west-1c", 0.01, age_h=1, product="Windows"),
            ],
        },
        request,
    )
    stub.add_response(
        "describe_spot_price_history",
        {
            "NextToken": "",
            "SpotPriceHistory": [
                _price("g5.xlarge", "eu-west-1b", 0.52, age_h=3),
                _price(
                    "g5.xlarge", "eu-west-1c", 0.47, age_h=0.5, product="Linux/UNIX (Amazon VPC)"
                ),
            ],
        },
        {**request, "NextToken": "page-2"},
    )
    with stub:
        prices = cost.spot_prices(session, types, REGION)
    stub.assert_no_pending_responses()
    assert prices == {"g4dn.xlarge": pytest.approx(0.24), "g5.xlarge": pytest.approx(0.47)}


def test_spot_price_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stubber: AWS's refusals for bad keys (AuthFailure) and missing permission."""
    for code, error in (("AuthFailure", CredentialsError), ("UnauthorizedOperation", CloudError)):
        session, stub = _stubbed_session(monkeypatch)
        stub.add_client_error("describe_spot_price_history", code, http_status_code=403)
        with stub, pytest.raises(error) as caught:
            cost.spot_prices(session, ["g4dn.xlarge"], REGION)
        assert (type(caught.value) is CredentialsError) == (error is CredentialsError)
    assert cost.spot_prices(session, [], REGION) == {}


def test_spot_prices_call_shape_against_moto(aws: MotoServer) -> None:
    """The real request over HTTP to moto; its price is a dummy, so only shape is checked."""
    prices = cost.spot_prices(
        boto3.session.Session(), ["g4dn.xlarge", "g5.xlarge", "g99.huge"], REGION
    )
    assert set(prices) == {"g4dn.xlarge", "g5.xlarge"}
    assert all(isinstance(p, float) and p > 0 for p in prices.values())


# --- the throughput table --------------------------------------------------------------------


def test_throughput_table_is_consistent_with_its_stated_derivation() -> None:
    """Each row is the T4 row × the family's factor, and fps × model cost is ~constant."""
    table = _table()
    t4 = table["fps_1080p"]["g4dn"]
    assert set(table["fps_1080p"]) == set(table["families"])
    for family, row in table["fps_1080p"].items():
        assert set(row) == set(table["models"]), family
        factor = table["families"][family]["relative_to_t4"]
        for model, fps in row.items():
            assert fps == pytest.approx(t4[model] * factor, rel=0.06), (family, model)
    # T4: 15 TFLOP/s effective ÷ (2 × MAC per pixel × 1080p pixels)
    for model, info in table["models"].items():
        flop = 2 * info["mmac_per_pixel"] * 1e6 * table["reference_pixels"]
        assert t4[model] == pytest.approx(15e12 / flop, rel=0.06), model


def test_fps_scales_with_pixel_count() -> None:
    full = cost.frames_per_second("g5.2xlarge", MODEL, 1920, 1080)
    assert full is not None
    assert full == _table()["fps_1080p"]["g5"][MODEL]
    assert cost.frames_per_second("g5.2xlarge", MODEL, 3840, 2160) == pytest.approx(full / 4)
    assert cost.frames_per_second("g5.2xlarge", MODEL, 960, 540) == pytest.approx(full * 4)
    assert cost.frames_per_second("p9.xlarge", MODEL, 1920, 1080) is None
    assert cost.frames_per_second("g5.xlarge", "my-custom-model", 1920, 1080) is None


# --- the estimate ----------------------------------------------------------------------------


def _hand_estimate(
    frames: int,
    width: int,
    height: int,
    scale: int,
    itype: str,
    price: float,
    max_parallel: int,
    chunks: int,
    max_gpu_vcpus: int = 64,
) -> dict[str, float]:
    """The estimate worked out by hand from the documented model and constants."""
    family, size = itype.split(".")
    vcpus = {"xlarge": 4, "2xlarge": 8, "12xlarge": 48}[size]
    gpus = {"xlarge": 1, "2xlarge": 1, "12xlarge": 4}[size]
    parallel = min(chunks, max_parallel, max_gpu_vcpus // vcpus * gpus)
    gpu_fps = _table()["fps_1080p"][family][MODEL] * (1920 * 1080) / (width * height)
    encode_fps = 15e6 * 4 / (width * scale * height * scale)  # 15 Mpx/s per vCPU, 4 vCPUs
    pace = min(gpu_fps, encode_fps)
    out_gb = frames * width * height * scale**2 * 0.1 / 8 / 1e9
    in_gb = frames * width * height * 0.15 / 8 / 1e9
    chunk_s = 30 + (in_gb + out_gb) / chunks * 1000 / 100 + frames / chunks / pace
    billed = (chunks * chunk_s + parallel * 360) / 3600
    cpu_s = 600 + 2 * (in_gb + out_gb) * 1000 / 100
    cpu = cpu_s / 3600 * 0.20 + (10 + 6 * chunks) * 0.000025
    storage = (2 * in_gb + 2 * out_gb) * 0.023 * 7 / 30
    transfer = out_gb * 0.09
    return {
        "parallel": parallel,
        "gpu_hours": frames / gpu_fps / 3600,
        "gpu_usd": billed * price / gpus,
        "transfer": transfer,
        "out_gb": out_gb,
        "total": billed * price / gpus + cpu + storage + transfer,
        "wall": 360 + math.ceil(chunks / parallel) * chunk_s + cpu_s,
        "pace": pace,
    }


def test_one_hour_of_1080p_to_4k_matches_the_hand_computation() -> None:
    prices = {"g4dn.xlarge": 0.21, "g5.xlarge": 0.48, "g6.xlarge": 0.33}
    est = cost.estimate_job(HOUR_24FPS, 1920, 1080, 2, MODEL, list(prices), prices, 8)
    per_type = {
        t: _hand_estimate(HOUR_24FPS, 1920, 1080, 2, t, p, 8, chunks=8) for t, p in prices.items()
    }
    cheapest = min(per_type, key=lambda t: per_type[t]["gpu_usd"])
    dearest = max(per_type, key=lambda t: per_type[t]["gpu_usd"])
    hand = per_type[cheapest]
    assert est.instance_type == cheapest
    assert est.parallel == hand["parallel"]
    assert est.gpu_hours == pytest.approx(hand["gpu_hours"])
    assert est.gpu_usd == pytest.approx(hand["gpu_usd"])
    assert est.output_gb == pytest.approx(hand["out_gb"])
    assert est.transfer_out_usd == pytest.approx(hand["transfer"])
    assert est.total_usd == pytest.approx(hand["total"])
    assert est.total_usd_high == pytest.approx(
        hand["total"] - hand["gpu_usd"] + per_type[dearest]["gpu_usd"]
    )
    assert est.wall_seconds == pytest.approx(hand["wall"])
    assert [o.instance_type for o in est.options] == sorted(
        prices, key=lambda t: per_type[t]["gpu_usd"]
    )
    assert est.notes == ()
    assert any("not measured" in a for a in est.assumptions)


def test_the_4k_encoder_caps_fast_gpus() -> None:
    """At 4K output the chunk job's CPU encoder, not a fast GPU, sets the pace."""
    prices = {"g5.xlarge": 0.48}
    est = cost.estimate_job(HOUR_24FPS, 1920, 1080, 2, MODEL, ["g5.xlarge"], prices, 8)
    gpu_fps = _table()["fps_1080p"]["g5"][MODEL]
    assert est.options[0].fps == gpu_fps
    assert est.options[0].effective_fps == pytest.approx(cost.encode_fps(3840, 2160))
    assert est.options[0].effective_fps < gpu_fps
    small = cost.estimate_job(1000, 640, 360, 2, "RealESRGAN_x4plus", ["g5.xlarge"], prices, 8)
    assert small.options[0].effective_fps == pytest.approx(small.options[0].fps)  # GPU-bound


def test_parallelism_is_capped_by_the_gpu_vcpu_limit() -> None:
    """min(chunks, MaxParallelChunks, MaxGpuVcpus ÷ vCPUs per instance × its GPUs)."""
    prices = {"g4dn.xlarge": 0.2, "g4dn.2xlarge": 0.3, "g5.12xlarge": 2.0}
    one = cost.estimate_job(50_000, 1920, 1080, 2, MODEL, ["g4dn.xlarge"], prices, 40, chunks=60)
    assert one.parallel == 16  # 64 vCPUs ÷ 4
    two = cost.estimate_job(50_000, 1920, 1080, 2, MODEL, ["g4dn.2xlarge"], prices, 40, chunks=60)
    assert two.parallel == 8  # 64 ÷ 8
    quad = cost.estimate_job(50_000, 1920, 1080, 2, MODEL, ["g5.12xlarge"], prices, 40, chunks=60)
    assert quad.parallel == 4  # one 48-vCPU instance fits, with its 4 GPUs
    few = cost.estimate_job(50_000, 1920, 1080, 2, MODEL, ["g4dn.xlarge"], prices, 40, chunks=5)
    assert few.parallel == 5
    small = cost.estimate_job(
        50_000, 1920, 1080, 2, MODEL, ["g4dn.xlarge", "g5.12xlarge"], prices, 40, 60, 16
    )
    assert [o.instance_type for o in small.options] == ["g4dn.xlarge"] and small.parallel == 4
    assert any(n.startswith("g5.12xlarge") and "MaxGpuVcpus" in n for n in small.notes)
    hand = _hand_estimate(50_000, 1920, 1080, 2, "g4dn.2xlarge", 0.3, 40, 60)
    assert two.wall_seconds == pytest.approx(hand["wall"])
    assert two.gpu_usd == pytest.approx(hand["gpu_usd"])


def test_chunk_timeout_comes_from_the_table_with_a_margin() -> None:
    """The issue's case: a 60 s chunk of RealESRGAN_x4plus on g4dn is predicted at 7,200 s
    of GPU time, exactly the old fixed limit; the limit now leaves the documented margin."""
    frames = 60 * 24
    heavy = "RealESRGAN_x4plus"
    timeout = cost.chunk_timeout_seconds(frames, 1920, 1080, 4, heavy, ["g4dn.xlarge", "g5.xlarge"])
    gpu_s = frames / cost.frames_per_second("g4dn.xlarge", heavy, 1920, 1080)  # the slowest
    assert gpu_s == pytest.approx(7200)
    in_out_gb = frames * 1920 * 1080 * (0.15 + 16 * 0.1) / 8 / 1e9
    expected = 30 + in_out_gb * 1000 / 100 + max(gpu_s, frames / cost.encode_fps(7680, 4320))
    assert timeout == math.ceil(3 * expected + 900)
    assert timeout > 3 * 7200
    # A model the table does not know is timed as its slowest model; Batch's minimum holds.
    unknown = cost.chunk_timeout_seconds(frames, 1920, 1080, 4, "my-model", ["g4dn.xlarge"])
    assert unknown == timeout - (timeout - unknown)  # well-defined
    assert unknown >= cost.chunk_timeout_seconds(frames, 1920, 1080, 4, MODEL, ["g4dn.xlarge"])
    assert cost.chunk_timeout_seconds(1, 64, 64, 2, MODEL, ["g6.xlarge"]) >= 60


def test_more_frames_cost_more() -> None:
    prices = {"g5.xlarge": 0.5}
    short = cost.estimate_job(1000, 1280, 720, 4, MODEL, ["g5.xlarge"], prices, 4)
    long = cost.estimate_job(2000, 1280, 720, 4, MODEL, ["g5.xlarge"], prices, 4)
    assert long.gpu_hours == pytest.approx(2 * short.gpu_hours)
    assert long.gpu_usd > short.gpu_usd and long.total_usd > short.total_usd
    assert long.transfer_out_usd == pytest.approx(2 * short.transfer_out_usd)


def test_more_parallelism_is_faster_for_the_same_gpu_hours() -> None:
    prices = {"g4dn.xlarge": 0.2}
    runs = [
        cost.estimate_job(50_000, 1920, 1080, 2, MODEL, ["g4dn.xlarge"], prices, n)
        for n in (1, 4, 16)
    ]
    assert [r.parallel for r in runs] == [1, 4, 16]
    assert runs[0].gpu_hours == pytest.approx(runs[1].gpu_hours) == runs[2].gpu_hours
    assert runs[0].wall_seconds > runs[1].wall_seconds > runs[2].wall_seconds
    # Start-up is paid per instance: more instances bill a little more.
    assert runs[0].billed_gpu_hours < runs[2].billed_gpu_hours


def test_uneven_chunks_take_whole_rounds() -> None:
    prices = {"g4dn.xlarge": 0.2}
    uneven = cost.estimate_job(9000, 1920, 1080, 2, MODEL, ["g4dn.xlarge"], prices, 4, chunks=9)
    hand = _hand_estimate(9000, 1920, 1080, 2, "g4dn.xlarge", 0.2, 4, 9)
    assert uneven.parallel == 4
    assert uneven.wall_seconds == pytest.approx(hand["wall"])  # ceil(9 / 4) = 3 rounds


def test_multi_gpu_instances_are_priced_per_gpu() -> None:
    single = cost.estimate_job(5000, 1920, 1080, 2, MODEL, ["g5.xlarge"], {"g5.xlarge": 1.0}, 2)
    quad = cost.estimate_job(5000, 1920, 1080, 2, MODEL, ["g5.12xlarge"], {"g5.12xlarge": 4.0}, 2)
    assert quad.options[0].usd_per_gpu_hour == pytest.approx(1.0)
    assert quad.gpu_usd == pytest.approx(single.gpu_usd)


def test_unknown_types_are_left_out_with_a_note() -> None:
    prices = {"g5.xlarge": 0.5, "p9.mega": 0.1}
    est = cost.estimate_job(
        1000, 1920, 1080, 2, MODEL, ["p9.mega", "g5.xlarge", "g6.xlarge"], prices, 2
    )
    assert [o.instance_type for o in est.options] == ["g5.xlarge"]
    assert any(n.startswith("p9.mega") and "instance type" in n for n in est.notes)
    assert any(n.startswith("g6.xlarge") and "Spot price" in n for n in est.notes)
    with pytest.raises(CloudError, match=r"p9\.mega") as caught:
        cost.estimate_job(1000, 1920, 1080, 2, MODEL, ["p9.mega"], prices, 2)
    assert "no throughput figure" in caught.value.hint
    with pytest.raises(CloudError, match="my-model") as caught:
        cost.estimate_job(1000, 1920, 1080, 2, "my-model", ["g5.xlarge"], prices, 2)
    assert "model" in caught.value.hint
    with pytest.raises(InputError):
        cost.estimate_job(0, 1920, 1080, 2, MODEL, ["g5.xlarge"], prices, 2)


def test_the_worked_example_in_docs_cloud_md_is_what_the_code_says() -> None:
    """docs/cloud.md walks through this estimate (1 h of 1080p at 24 fps → 4K, 60 chunks of
    a minute, the stack's defaults); keep its figures true."""
    prices = {"g4dn.xlarge": 0.21, "g5.xlarge": 0.48, "g6.xlarge": 0.33}
    est = cost.estimate_job(HOUR_24FPS, 1920, 1080, 2, MODEL, list(prices), prices, 16, 60)
    best = est.options[0]
    assert (est.instance_type, est.parallel) == ("g4dn.xlarge", 16)
    assert [o.instance_type for o in est.options] == ["g4dn.xlarge", "g6.xlarge", "g5.xlarge"]
    assert (round(best.effective_fps, 1), round(est.options[1].effective_fps, 1)) == (5.8, 7.2)
    assert round(best.chunk_seconds) == 280
    assert (round(est.gpu_hours, 2), round(est.billed_gpu_hours, 2)) == (4.14, 6.27)
    assert (round(est.gpu_usd, 2), round(est.output_gb, 2)) == (1.32, 8.96)
    assert (round(est.transfer_out_usd, 2), round(est.total_usd, 2)) == (0.81, 2.31)
    assert (round(est.total_usd_high, 2), round(est.wall_seconds / 60)) == (3.61, 39)
    docs = (Path(__file__).resolve().parents[2] / "docs" / "cloud.md").read_text(encoding="utf-8")
    for figure in ("$2.31", "$3.61", "39 min", "280 s", "6.27", "5.8", "7.2"):
        assert figure in docs, figure
