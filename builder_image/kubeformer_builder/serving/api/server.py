"""Running the front with uvicorn: in a thread beside `kubeformer serve`'s Triton, or as the pod's process."""

from __future__ import annotations

import threading
import time

from kubeformer_builder.errors import ServeError
from kubeformer_builder.serving.api.settings import ApiSettings, Listen


def uvicorn_config(settings: ApiSettings, listen: Listen):
    import uvicorn

    from kubeformer_builder.serving.api.app import create_app

    # uvloop and httptools when installed (the serve extra installs them), the front's own JSON logs off:
    # errors are logged by the app, requests are counted on /metrics.
    return uvicorn.Config(
        create_app(settings),
        host=listen.host,
        port=listen.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
        server_header=False,
    )


def run_forever(settings: ApiSettings, listen: Listen) -> None:
    """Serve in this thread until SIGINT or SIGTERM (uvicorn's own handlers)."""
    import uvicorn

    uvicorn.Server(uvicorn_config(settings, listen)).run()


class ApiServer:
    """The front in a background thread; `with ApiServer(settings, listen):` returns once it listens."""

    def __init__(self, settings: ApiSettings, listen: Listen, startup_timeout_s: float = 30.0):
        import uvicorn

        self.listen = listen
        self.server = uvicorn.Server(uvicorn_config(settings, listen))
        self.thread = threading.Thread(target=self.server.run, name="kubeformer-api", daemon=True)
        self.startup_timeout_s = startup_timeout_s

    def __enter__(self) -> ApiServer:
        self.thread.start()
        deadline = time.monotonic() + self.startup_timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise ServeError(f"API front could not listen on {self.listen.url} (port in use?)")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def check_alive(self) -> None:
        if not self.thread.is_alive():
            raise ServeError(f"API front on {self.listen.url} stopped on its own")

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout=15)
