"""Fails when a module of src/ runs past 400 lines or a function past 80 without saying why.

A long module or function keeps its length only with a reason on the line before it (a module:
its first line) in a comment that starts `# long:`.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
REASON = "# long:"


def findings(root: Path) -> list[str]:
    """One line per module or function that is too long and gives no reason."""
    found = []
    for path in sorted(root.rglob("*.py")):
        lines = path.read_text().splitlines()
        if len(lines) > MAX_MODULE_LINES and not any(
                line.startswith(REASON) for line in lines[:3]):
            found.append(f"{path}: {len(lines)} lines (more than {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse("\n".join(lines), str(path))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            size = (node.end_lineno or node.lineno) - first + 1
            reason = lines[first - 2].strip() if first >= 2 else ""
            if size > MAX_FUNCTION_LINES and not reason.startswith(REASON):
                found.append(f"{path}:{node.lineno}: {node.name} is {size} lines"
                             f" (more than {MAX_FUNCTION_LINES})")
    return found


def main() -> int:
    found = findings(Path(sys.argv[1] if len(sys.argv) > 1 else "src"))
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
