"""UI latency: time to first page after `python launch.py` (first start, then with the demo cached),
a 16-image grid in Browse (fast-cpu preset), and click round trips while a training job runs.

    python bench/ui_latency.py [--workspace DIR] [--skip-launch]

Prints one JSON line per measurement. Targets (issue 4): first page < 30 s on a first start and
< 10 s with the demo cached; 16-image grid < 1 s on CPU; clicks < 1 s during training.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def emit(**kv) -> None:
    print(json.dumps(kv), flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def time_to_first_page(workspace: Path, timeout: float = 300) -> tuple[float, float | None]:
    """Seconds from spawning launch.py until (1) GET / answers 200 and (2) Chromium shows the demo
    dataset in the Data tab (None when Chromium is not installed)."""
    port = free_port()
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "launch.py"), "--workspace", str(workspace), "--port", str(port)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        page = None
        while time.perf_counter() - t0 < timeout:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    if r.status == 200:
                        page = time.perf_counter() - t0
                        break
            except OSError:
                time.sleep(0.2)
        if page is None:
            raise TimeoutError(f"no page after {timeout} s")
        if not Path("/usr/bin/chromium").exists():
            return page, None
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
            pg = browser.new_page()
            pg.goto(f"http://127.0.0.1:{port}/")
            pg.locator("#mg-data-info").get_by_text("images from").wait_for(timeout=timeout * 1000)
            shown = time.perf_counter() - t0
            browser.close()
        return page, shown
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def in_process_app(workspace: Path):
    from medgan_ui.cli.serve import load_demo
    from medgan_ui.ui.app import serve
    from medgan_ui.ui.context import AppContext

    ctx = AppContext.create(workspace)
    load_demo(ctx)
    demo = serve(ctx, host="127.0.0.1", port=free_port(), prevent_thread_lock=True, quiet=True)
    return ctx, demo


def browser_grid_times(url: str, run_id: str, n: int = 5) -> list[float]:
    """Click Generate in Chromium and time until the 16 new images have loaded."""
    if not Path("/usr/bin/chromium").exists():
        return []
    from playwright.sync_api import sync_playwright

    out = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
        pg = browser.new_page(viewport={"width": 1360, "height": 1000})
        pg.goto(url)
        pg.get_by_role("tab", name="Browse").click()
        pg.locator("#mg-refresh-runs").click()
        pg.locator("#mg-run-info").get_by_text("gdgan").wait_for(timeout=60_000)
        old: list[str] = []
        for i in range(n + 1):
            pg.locator("#mg-seed input").fill(str(100 + i))  # new seed, new images
            t0 = time.perf_counter()
            pg.locator("#mg-generate").click()
            pg.wait_for_function("""old => { const im = Array.from(document.querySelectorAll('#mg-gallery img'));
                return im.length === 16 && im.every(i => i.complete && i.naturalWidth > 0 && !old.includes(i.src)); }""",
                                 arg=old, timeout=60_000)
            old = pg.locator("#mg-gallery img").evaluate_all("im => im.map(i => i.src)")
            if i:  # the first click also loads the checkpoint
                out.append(time.perf_counter() - t0)
        browser.close()
    return out


def trained_fast_cpu_run(ctx) -> str:
    """A fast-cpu GDGAN run with one checkpoint (2 steps: sampling speed does not depend on training)."""
    from medgan_ui.gan.config import make_configs
    from medgan_ui.gan.runs import Run

    ds = ctx.require_dataset()
    tcfg, mcfg = make_configs("gdgan", "fast-cpu", steps=2, checkpoint_every=2, sample_every=2, log_every=1,
                              image_size=ds.size)
    run = Run.create(ctx.workspace, ds, tcfg, mcfg)
    run.train(ds)
    run_id = run.id
    return run_id


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def summary(xs: list[float]) -> dict:
    return {"median_s": round(statistics.median(xs), 4), "max_s": round(max(xs), 4), "n": len(xs)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--workspace", default=None, help="default: a temporary folder, removed afterwards")
    ap.add_argument("--skip-launch", action="store_true", help="skip the two launch.py start-up timings")
    args = ap.parse_args()
    tmp = Path(args.workspace or tempfile.mkdtemp(prefix="medgan-bench-"))
    import torch

    emit(bench="env", cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(), cuda=torch.cuda.is_available(),
         loadavg_1min=round(os.getloadavg()[0], 2))
    try:
        if not args.skip_launch:
            ws = tmp / "launch"
            for name, target in (("first_start", 30), ("demo_cached", 10)):
                page, shown = time_to_first_page(ws)
                emit(bench=f"first_page_{name}", seconds=round(page, 2), target_s=target,
                     demo_shown_s=None if shown is None else round(shown, 2))

        from gradio_client import Client

        ctx, demo = in_process_app(tmp / "app")
        # the browser fetches images itself, in parallel: time the event, not a serial download of 16 files
        client = Client(demo.local_url, verbose=False, download_files=False)
        run_id = trained_fast_cpu_run(ctx)
        client.predict(run_id, api_name="/select_run")
        labels = ["F", "PA", "any", "any"]
        gen = lambda: client.predict(run_id, "latest", 16, 0, ["Cardiomegaly"], *labels, api_name="/generate")  # noqa: E731
        cold = timed(gen, 1)
        emit(bench="browse_16_grid_cold", seconds=round(cold[0], 3), note="first call loads the checkpoint")
        emit(bench="browse_16_grid_api", **summary(timed(gen, 5)), target_s=1.0, preset="fast-cpu",
             note="API round trip: generation + PNG encoding into Gradio's cache + response")
        shown = browser_grid_times(demo.local_url, run_id)
        if shown:
            emit(bench="browse_16_grid_browser", **summary(shown), target_s=1.0, preset="fast-cpu",
                 note="Chromium: click Generate until all 16 images have loaded")
        from medgan_ui.gan.generate import generate, load_run

        loaded = load_run(ctx.workspace.run_dir(run_id))
        emit(bench="browse_16_generate_only", **summary(timed(lambda: generate(loaded, 16, {"sex": "F"}, ["Cardiomegaly"]), 5)))

        # clicks while a fast-cpu training job runs
        ds = ctx.require_dataset()
        client.predict("gdgan", "fast-cpu", 100_000, 32, 1, 2e-4, 2e-4, "none", api_name="/start_training")
        time.sleep(5)  # past start-up, into steady training
        new_run = ctx.jobs.active("train")[0]["run_id"]
        emit(bench="clicks_during_training_status", **summary(timed(lambda: client.predict(new_run, api_name="/train_status"), 10)),
             target_s=1.0)
        emit(bench="clicks_during_training_select_run", **summary(timed(lambda: client.predict(run_id, api_name="/select_run"), 5)),
             target_s=1.0)
        emit(bench="clicks_during_training_generate16", **summary(timed(gen, 5)), target_s=1.0)
        job = ctx.jobs.job_for_run(new_run)
        emit(bench="training_during_clicks", step=job["progress"].get("step"), img_per_s=job["progress"].get("img_per_s"),
             image_size=ds.size)
        ctx.jobs.shutdown(timeout=60)
        demo.close()
    finally:
        if not args.workspace:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
