"""The tritonserver command line, environment and CLI flags, checked without starting Triton."""

from __future__ import annotations

import argparse
import sysconfig
from pathlib import Path

import pytest

from kubeformer_builder.cli import serve as serve_cli
from kubeformer_builder.serving.api.settings import ApiSettings, Listen
from kubeformer_builder.serving.overrides import InstanceKind
from kubeformer_builder.serving.tritonserver import (
    Endpoints,
    find_distribution,
    prepare_install,
    server_command,
    server_environment,
)


def test_command_binds_every_endpoint_to_the_given_host():
    endpoints = Endpoints("127.0.0.1", 1, 2, 3)
    command = server_command(
        Path("/bin/tritonserver"), [Path("/a"), Path("/b")], Path("/backends"), endpoints
    )
    assert command[0] == "/bin/tritonserver"
    for flag in ("--model-repository=/a", "--model-repository=/b", "--backend-directory=/backends"):
        assert flag in command
    for flag in ("--http-address", "--grpc-address", "--metrics-address"):
        assert f"{flag}=127.0.0.1" in command
    assert {"--http-port=1", "--grpc-port=2", "--metrics-port=3"} <= set(command)
    assert (endpoints.http, endpoints.grpc, endpoints.metrics) == (
        "http://127.0.0.1:1",
        "grpc://127.0.0.1:2",
        "http://127.0.0.1:3/metrics",
    )


def test_install_holds_the_python_backend_and_the_onnxruntime_backend(tmp_path):
    distribution = find_distribution()
    backends = prepare_install(distribution, tmp_path)
    names = sorted(p.relative_to(backends).as_posix() for p in backends.rglob("*") if p.is_file())
    assert names == [
        "onnxruntime/model.py",
        "python/libtriton_python.so",
        "python/triton_python_backend_stub",
        "python/triton_python_backend_utils.py",
    ]
    assert not any(p.is_symlink() for p in backends.rglob("*"))  # Triton refuses libraries that escape


def test_environment_finds_libpython_and_the_wheel_libraries():
    distribution = find_distribution()
    paths = server_environment(distribution)["LD_LIBRARY_PATH"].split(":")
    assert paths[:2] == [sysconfig.get_config_var("LIBDIR"), str(distribution.libs)]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    serve_cli.add_args(parser)
    return parser.parse_args(argv)


def test_serve_flags_become_a_typed_config():
    args = parse(
        ["art", "s3://b/p", "--http-port", "9000", "--instances", "2", "--preferred-batch-sizes", "4,8"]
    )
    config = serve_cli.serve_config(args, tuple(args.sources))
    assert config.sources == ("art", "s3://b/p")
    assert (config.endpoints.host, config.endpoints.http_port, config.endpoints.grpc_port) == (
        "127.0.0.1",
        9000,
        8001,
    )
    assert config.overrides.instance_kind is InstanceKind.AUTO
    assert (config.overrides.instance_count, config.overrides.preferred_batch_sizes) == (2, (4, 8))
    assert config.overrides.max_queue_delay_us is None


def test_bad_batch_sizes_are_a_usage_error():
    with pytest.raises(SystemExit):
        parse(["art", "--preferred-batch-sizes", "4,x"])


def test_serve_starts_the_api_front_on_8080_unless_turned_off():
    config = serve_cli.serve_config(parse(["art"]), ("art",))
    assert config.api == Listen("127.0.0.1", 8080)
    assert config.api_settings == ApiSettings()
    args = parse(["art", "--host", "0.0.0.0", "--api-port", "9090", "--api-max-inputs", "16"])
    config = serve_cli.serve_config(args, ("art",))
    assert config.api == Listen("0.0.0.0", 9090) and config.api_settings.max_inputs == 16
    assert serve_cli.serve_config(parse(["art", "--no-api"]), ("art",)).api is None
