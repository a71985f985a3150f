"""``python -m bench`` (``make bench``): measure the running pipeline and its raw stages.

Prints the tables, compared with the last run recorded in ``bench/results/``, and writes
``.run/bench/<date>.json`` and ``.md`` (``<date>-backlog.*`` for ``--backlog``,
``<date>-profile.*`` for ``--profile``). With ``--record``, the files go to
``bench/results/`` instead and the table to ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shlex
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from services.common.kafka import create_producer

from . import dead_letters, scaling, stages
from .peer import run as peer_run
from .pipeline import Pipeline
from .procs import SERVICES, BenchError, load_average, machine, service_pids
from .profile import Profiler, py_spy
from .records import batch_bodies, records
from .report import Report, Stage, newest_results, render_markdown, to_json, update_readme
from .settings import OUTPUT_DIR, README, RESULTS_DIR, Settings

log = logging.getLogger("bench")

# Between phases: the relay's last round, autovacuum and the GC settle before the next load.
SETTLE_SECONDS = 3.0


@dataclass(frozen=True)
class Options:
    records: int
    rates: list[float]
    rate_seconds: float
    backlog: int | None
    skip_raw: bool
    profile: bool
    scaling: bool = False
    repeat: int = 1
    record: bool = False
    dead_letters: int | None = None
    peer: bool = False
    ids: int = 0
    partitions: int = 6


def parse_args(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--records",
        type=int,
        help="records at full speed (default 50000; with --scaling, per scheduler phase: "
        "40000, and 2.5 times as many events per relay phase)",
    )
    parser.add_argument(
        "--rates",
        help="fixed rates in records/s, comma-separated; empty for none (default 100,1000; "
        "with --peer, 1000)",
    )
    parser.add_argument(
        "--rate-seconds", type=float, default=15.0, help="seconds at each rate (default 15)"
    )
    parser.add_argument(
        "--backlog",
        type=int,
        metavar="N",
        help="instead: produce N records with the scheduler paused, resume, time the drain",
    )
    parser.add_argument("--skip-raw", action="store_true", help="skip the raw stages")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run py-spy on both services during the full-speed phase (needs py-spy)",
    )
    parser.add_argument(
        "--scaling",
        action="store_true",
        help="instead: throughput with 1, 2, 3 schedulers and 1, 2, 3 relays (bench/scaling.py)",
    )
    parser.add_argument(
        "--dead-letters",
        type=int,
        metavar="N",
        help="instead: N more dead letters, then the latency of the dead-letter list over "
        "HTTP and the index's memory (bench/dead_letters.py)",
    )
    parser.add_argument(
        "--peer",
        action="store_true",
        help="instead: fluxo-dados against Kafka Connect + Debezium, a backlog of --records "
        "(default 200000) over --ids ids each, on a broker and a PostgreSQL of its own "
        "(bench/peer/)",
    )
    parser.add_argument(
        "--ids", type=int, help="with --peer: distinct ids among the records (default half)"
    )
    parser.add_argument(
        "--partitions", type=int, default=6, help="with --peer: partitions per topic (default 6)"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="run each phase N times, in turn, and report the median and spread (default 1)",
    )
    parser.add_argument(
        "--record",
        action="store_true",
        help="write the results to bench/results/ and the table to bench/README.md "
        "(to be committed); without it they go to .run/bench/",
    )
    args = parser.parse_args(argv)
    if args.records is None:
        args.records = 40_000 if args.scaling else 200_000 if args.peer else 50_000
    if args.rates is None:
        args.rates = "1000" if args.peer else "100,1000"
    if args.ids is None:
        args.ids = max(1, args.records // 2)
    if not 0 < args.ids <= args.records or args.partitions < 1:
        parser.error("--ids must be in 1..--records, --partitions positive")
    try:
        rates = [float(rate) for rate in args.rates.split(",") if rate.strip()]
    except ValueError:
        parser.error(f"--rates: not a list of numbers: {args.rates!r}")
    if args.records < 1 or any(rate <= 0 for rate in rates) or args.rate_seconds <= 0:
        parser.error("--records, --rates and --rate-seconds must be positive")
    if args.backlog is not None and args.backlog < 1:
        parser.error("--backlog must be positive")
    if args.repeat < 1:
        parser.error("--repeat must be positive")
    if args.dead_letters is not None and args.dead_letters < 1:
        parser.error("--dead-letters must be positive")
    return Options(
        args.records,
        rates,
        args.rate_seconds,
        args.backlog,
        args.skip_raw,
        args.profile,
        args.scaling,
        args.repeat,
        args.record,
        args.dead_letters,
        args.peer,
        args.ids,
        args.partitions,
    )


async def raw_stages(settings: Settings, run_id: str, count: int) -> list[Stage]:
    """Every raw stage with the full-speed phase's records (the same seed, the same bytes)."""
    values = list(records(run_id, 0, count))
    bodies = batch_bodies(
        values,
        topic=settings.kafka.topic_cadastro,
        partitions=settings.kafka.partitions,
        batch_size=settings.batch_size,
        timestamp_ms=int(time.time() * 1000),
    )
    measured = await stages.kafka(settings, run_id, values)
    measured.append(await stages.database(settings, run_id, bodies))
    measured.append(await stages.http(settings, bodies, count))
    for stage in measured:
        log.info("raw stage %s: %.0f records/s", stage.name, stage.throughput)
    return measured


async def run(options: Options, command: str) -> Report:
    settings = Settings.load()
    pids = service_pids()
    if options.profile:
        py_spy()  # missing: say so now, not after the raw stages
    run_id = uuid.uuid4().hex[:8]
    report = Report(
        run_id=run_id,
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        command=command,
        machine=machine(),
        settings=settings.reported,
        load_before=load_average(),
    )
    log.info("run %s: services %s", run_id, pids)
    producer = create_producer(settings.kafka)
    pipeline = Pipeline(settings, run_id, pids, producer)
    try:
        await producer.start()
        await pipeline.start()
        if options.backlog is not None:
            for _ in range(options.repeat):
                report.phases.append(await pipeline.backlog(options.backlog))
        else:
            if not options.skip_raw:
                report.stages = await raw_stages(settings, run_id, options.records)
                await asyncio.sleep(SETTLE_SECONDS)
            # The phases take turns, so that a load that comes and goes on a shared machine
            # spreads over all of them rather than falling on the repeats of one.
            for repeat in range(options.repeat):
                if repeat:
                    await asyncio.sleep(SETTLE_SECONDS)
                await full_speed(pipeline, report, options, pids, profile=repeat == 0)
                for rate in options.rates:
                    await asyncio.sleep(SETTLE_SECONDS)
                    count = max(1, round(rate * options.rate_seconds))
                    report.phases.append(await pipeline.phase(f"{rate:g}/s", count, rate))
                    log.info("phase %s: %s", report.phases[-1].name, report.phases[-1].latency)
    finally:
        await pipeline.stop()
        await producer.stop()
        log.info("deleted %d rows of this run from products", await pipeline.delete_rows())
    report.load_after = load_average()
    return report


async def full_speed(
    pipeline: Pipeline, report: Report, options: Options, pids: dict[str, int], profile: bool
) -> None:
    profiler = None
    if options.profile and profile:
        services = {name: pid for name, pid in pids.items() if name in SERVICES}
        profiler = Profiler(services, OUTPUT_DIR, report.started_at[:10])
        await profiler.start()
    try:
        phase = await pipeline.phase("full speed", options.records, None)
    finally:
        if profiler is not None:
            report.profiles = await profiler.stop()
    report.phases.append(phase)
    log.info("phase full speed: %.0f records/s", phase.throughput)


def last_recorded(mode: str) -> tuple[str, dict[str, Any]] | None:
    """The newest results file of this mode in ``bench/results/``: name and content."""
    name = newest_results((path.name for path in RESULTS_DIR.glob("*.json")), mode)
    if name is None:
        return None
    return name, orjson.loads((RESULTS_DIR / name).read_bytes())


def write(report: Report, mode: str, record: bool) -> str:
    """The results files, and with ``record`` the README's section; returns the markdown.

    Each mode (``latest``, ``backlog``, ``profile``) keeps its own files and README section,
    so a backlog or a profiled run does not replace the figures of a plain one.
    """
    baseline = last_recorded(mode)
    markdown = render_markdown(
        report,
        baseline[1] if baseline else None,
        f"bench/results/{baseline[0]}" if baseline else "",
    )
    stem = report.started_at[:10] + ("" if mode == "latest" else f"-{mode}")
    folder = RESULTS_DIR if record else OUTPUT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.json").write_bytes(
        orjson.dumps(to_json(report), option=orjson.OPT_INDENT_2) + b"\n"
    )
    (folder / f"{stem}.md").write_text(markdown, encoding="utf-8")
    if record:
        readme = README.read_text(encoding="utf-8") if README.exists() else "# Benchmark\n"
        README.write_text(update_readme(readme, markdown, mode), encoding="utf-8")
    log.info("results in %s", folder / f"{stem}.md")
    return markdown


def letters(count: int, record: bool) -> str:
    """``--dead-letters``: its table, also written beside the other modes' results."""
    scheduler = service_pids()["scheduler"]
    markdown = asyncio.run(dead_letters.run_dead_letters(Settings.load(), count, scheduler))
    folder = RESULTS_DIR if record else OUTPUT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{datetime.now(UTC).date()}-dead-letters.md"
    path.write_text(markdown + "\n", encoding="utf-8")
    log.info("results in %s", path)
    return markdown


def peer_options(options: Options) -> peer_run.Options:
    return peer_run.Options(
        records=options.records,
        ids=options.ids,
        partitions=options.partitions,
        rates=options.rates,
        rate_seconds=options.rate_seconds,
        repeat=options.repeat,
        record=options.record,
    )


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    options = parse_args(sys.argv[1:])
    command = shlex.join(["python", "-m", "bench", *sys.argv[1:]])
    try:
        if options.peer:
            print(peer_run.main(peer_options(options), command))
            return
        if options.scaling:
            events = options.records * 5 // 2
            print(scaling.main([1, 2, 3], options.records, events, options.record))
            return
        if options.dead_letters:
            print(letters(options.dead_letters, options.record))
            return
        report = asyncio.run(run(options, command))
    except BenchError as error:
        sys.exit(f"bench: {error}")
    mode = "backlog" if options.backlog else "profile" if options.profile else "latest"
    print(write(report, mode, options.record))


if __name__ == "__main__":
    main()
