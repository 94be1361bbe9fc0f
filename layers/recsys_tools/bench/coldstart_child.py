"""One cold start, in a fresh interpreter: import a function's handler and serve its first request.

Run by path with ``python -P`` so that nothing is imported before the clock starts::

    python -P coldstart_child.py <operation | reference> <result.json> < event.json

Phases, in seconds: ``import`` (recsys.api + recsys.handler: FastAPI, Mangum, Powertools, pydantic, boto3),
``model_load`` (generate and update: the recommender's TensorFlow + scann import, the SavedModel and the
vocabularies), ``handler_init`` (importing functions.<operation>.app: the app, Mangum, Powertools wrappers) and
``first_call``. ``reference`` only runs a bare `import tensorflow, scann` (``tensorflow_import``). DynamoDB is reached
over loopback (DYNAMODB_ENDPOINT_URL), so moto is never imported here.
"""

import time

START = time.perf_counter()

import importlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402


def main() -> None:
    operation, result_path = sys.argv[1], sys.argv[2]
    event = json.load(sys.stdin)
    phases: dict[str, float] = {}
    cpu: dict[str, float] = {}  # CPU seconds: what a phase costs without the wait for a busy machine's cores

    def timed(phase: str, action: Callable[[], Any]) -> Any:
        start, start_cpu = time.perf_counter(), time.process_time()
        value = action()
        phases[phase] = time.perf_counter() - start
        cpu[phase] = time.process_time() - start_cpu
        return value

    def import_tensorflow() -> None:
        importlib.import_module("tensorflow")
        importlib.import_module("scann")

    result: dict[str, Any] = {"start": START, "phases": phases, "cpu": cpu}
    if operation == "reference":
        timed("tensorflow_import", import_tensorflow)
    else:
        timed("import", lambda: (importlib.import_module("recsys.api"), importlib.import_module("recsys.handler")))
        if importlib.import_module("recsys.operations").operation(operation).loads_model:
            # what make_handler does for such an operation, timed on its own (the handler then finds it loaded)
            settings = importlib.import_module("recsys.settings").load_settings()
            load = importlib.import_module("recsys.recommender").load_recommender
            timed("model_load", lambda: load(settings.resolved_model_dir()))
        handler = timed("handler_init", lambda: importlib.import_module(f"functions.{operation}.app").handler)
        context = importlib.import_module("recsys_tools.events").FakeLambdaContext()
        response = timed("first_call", lambda: handler(event, context))
        result |= {"status": response["statusCode"], "tensorflow_imported": "tensorflow" in sys.modules}
    with open(result_path, "w", encoding="utf-8") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
