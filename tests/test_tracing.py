"""OpenTelemetry spans around command handling, appends, projection batches and queries; a
no-op without a tracer provider or without the package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from projectionist import tracing

REPO = Path(__file__).resolve().parents[1]

# Each run is a process of its own: a tracer provider, once set, stays for the process.
TRACED = """
import json
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)

from projectionist import Runtime
from tests.migrations.ledger import Deposit, GetBalance, create_app

runtime = Runtime(create_app(), store="sqlite:///{store}")
with trace.get_tracer("caller").start_as_current_span("request"):
    runtime.execute(Deposit(account="a1", amount=5))
runtime.catch_up()
runtime.ask(GetBalance(account="a1"))
runtime.stop()
by_id = {{s.context.span_id: s.name for s in exporter.get_finished_spans()}}
print(json.dumps([
    {{"name": s.name, "attributes": dict(s.attributes),
      "parent": by_id.get(s.parent.span_id) if s.parent else None}}
    for s in exporter.get_finished_spans()
]))
"""

WITHOUT_PACKAGE = """
import sys
sys.modules["opentelemetry"] = None  # as if the otel extra were not installed
from projectionist import Runtime, tracing
from tests.migrations.ledger import Deposit, create_app

assert tracing.trace is None
assert tracing.span("projectionist.command") is tracing.span("projectionist.query")
runtime = Runtime(create_app(), store="sqlite:///{store}")
print(runtime.execute(Deposit(account="a1", amount=5)).position)
runtime.stop()
"""


def run_python(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
        str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_command_append_projection_and_query_are_spans(tmp_path: Path) -> None:
    spans: list[dict[str, Any]] = json.loads(
        run_python(TRACED.format(store=tmp_path / "traced.db")))
    named = {(s["name"], json.dumps(s["attributes"], sort_keys=True)): s for s in spans}
    command = named[("projectionist.command", '{"projectionist.command": "Deposit"}')]
    assert command["parent"] == "request"  # a child of the caller's span
    append = named[("projectionist.append", '{"projectionist.events": 1}')]
    assert append["parent"] == "projectionist.command"
    applied = sorted(s["attributes"]["projectionist.projection"] for s in spans
                     if s["name"] == "projectionist.apply")
    assert applied == ["accounts", "balances"]
    assert all(s["attributes"]["projectionist.events"] == 1 for s in spans
               if s["name"] == "projectionist.apply")
    query = named[("projectionist.query", '{"projectionist.query": "GetBalance"}')]
    assert query["parent"] is None


def test_without_the_package_spans_are_one_shared_no_op(tmp_path: Path) -> None:
    assert run_python(WITHOUT_PACKAGE.format(store=tmp_path / "plain.db")).strip() == "1"


def test_without_a_tracer_provider_a_span_is_the_shared_no_op() -> None:
    # No test in this process sets a provider: the API answers with its proxy.
    assert tracing.span("projectionist.query") is tracing.span("projectionist.command")
