"""Benchmarks: the "orders" workload in-process, and the shop over HTTP (see bench/README.md)."""

from .orders import BenchmarkFailed, OrdersSettings, run_orders

__all__ = ["BenchmarkFailed", "OrdersSettings", "run_orders"]
