"""The ``warmgate`` command: serve, plugins, functions, openapi, and what plugins add."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any

import click
import msgspec

from warmgate.core.config import load_settings, plan_functions
from warmgate.core.http.errors import ConfigError
from warmgate.core.plugins import get_pipelines, list_plugins, load_plugins, pm
from warmgate.core.version import __version__

__all__ = ["cli", "main"]

_config_option = click.option("--config", "config_path", type=click.Path(dir_okay=False),
                              help="serverless.yaml or aiModels.json (default: ./serverless.yaml if present).")
_profile_option = click.option("--profile", type=click.Choice(["demo"]), default=None,
                               help="demo: serve every installed pipeline with tiny local models.")


class _Commands(click.Group):
    """The ``warmgate`` group: a ``ConfigError`` raised by any command under it (plugin commands
    too) is one ``Error: invalid configuration: ...`` line and exit status 1, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            raise click.ClickException(f"invalid configuration: {exc}") from None


@click.group(cls=_Commands)
@click.version_option(__version__, prog_name="warmgate")
def cli() -> None:
    """warmgate: a serverless AI gateway for the Livepeer AI API and OpenAI chat."""


@cli.command()
@_config_option
@_profile_option
@click.option("--host", default=None, help="Interface to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to listen on (default 8000).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Gateway processes on the port (default gateway.workers, 1); more than one only for "
                   "functions that hold no model in process (remote, ray, relays).")
def serve(config_path: str | None, profile: str | None, host: str | None, port: int | None,
          workers: int | None) -> None:
    """Start the gateway."""
    import uvicorn

    from warmgate.core.http.app import create_app
    from warmgate.core.workers import refuse_models_in_workers, run_workers

    settings = load_settings(config_path, profile=profile)
    gateway = settings.gateway
    if host is not None or port is not None or workers is not None:
        gateway = msgspec.structs.replace(gateway, host=host or gateway.host,
                                          port=gateway.port if port is None else port,
                                          workers=gateway.workers if workers is None else workers)
        settings = msgspec.structs.replace(settings, gateway=gateway)
    if gateway.workers > 1:
        refuse_models_in_workers(settings, get_pipelines())
        sys.exit(run_workers("warmgate.core.workers:worker_app", settings, {"config": config_path, "profile": profile}))
    app = create_app(settings)
    from warmgate.core.http.server import GatewayServer

    config = uvicorn.Config(app, host=gateway.host, port=gateway.port, log_config=None, access_log=False,
                            timeout_graceful_shutdown=10)
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the Ctrl-C it handled, as uvicorn.run does
        GatewayServer(config, app).run()


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json: bool) -> None:
    """List the installed plugins and the hooks they implement."""
    found = list_plugins()
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    if not found:
        click.echo("no plugins")
    for plugin in found:
        version = f" {plugin['version']}" if "version" in plugin else ""
        click.echo(f"{plugin['name']}{version}: {', '.join(plugin['hooks'])}")


@cli.command()
@_config_option
@_profile_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def functions(config_path: str | None, profile: str | None, as_json: bool) -> None:
    """Validate the configuration and list the functions it defines."""
    settings = load_settings(config_path, profile=profile)
    planned = plan_functions(settings, get_pipelines())
    if as_json:
        click.echo(json.dumps(msgspec.to_builtins(planned), indent=2))
        return
    click.echo(f"# {settings.source}")
    if not planned:
        click.echo("no functions (no pipeline plugins installed?)")
    for fn in planned:
        warm = "warm" if fn.keep_warm else f"idle_timeout={fn.scaling.idle_timeout:g}s"
        click.echo(f"{fn.name}  pipeline={fn.pipeline} model={fn.model_id} executor={fn.executor} "
                   f"max_concurrency={fn.max_concurrency} max_queue={fn.max_queue} {warm}")


@cli.group()
def deploy() -> None:
    """Deploy functions to a distributed engine."""


@deploy.command("ray")
@_config_option
@click.option("--address", default=None, help="Ray cluster to deploy to (default: ray.address, then $RAY_ADDRESS).")
@click.option("--dry-run", is_flag=True, help="Print the Ray Serve config (for `serve deploy`) instead of applying it.")
def deploy_ray(config_path: str | None, address: str | None, dry_run: bool) -> None:
    """Make every function with `executor: ray` a Ray Serve application that scales from zero."""
    import os
    from pathlib import Path

    import yaml

    from warmgate.core.executors import ray_serve
    from warmgate.core.executors.ray_settings import RaySettings
    from warmgate.core.http.errors import LoadError

    settings = load_settings(config_path)
    pipelines = get_pipelines()
    planned = ray_serve.ray_functions(plan_functions(settings, pipelines))
    if not planned:
        raise click.ClickException(f"{settings.source} has no function with executor: ray")
    source = str(Path(settings.source).resolve()) if Path(settings.source).is_file() else settings.source
    if dry_run:
        click.echo(yaml.safe_dump(ray_serve.serve_config(planned, source, pipelines), sort_keys=False), nl=False)
        return
    address = address or settings.section(RaySettings).address or os.environ.get("RAY_ADDRESS")
    if not address:
        raise click.ClickException("deploying needs a running Ray cluster: --address (or ray.address, $RAY_ADDRESS); "
                                   "a local one would stop when this command exits")
    ray_settings = msgspec.structs.replace(settings.section(RaySettings), address=address)
    for fn in planned:
        try:
            ray_serve.deploy(ray_serve.function_specs(pipelines, fn), fn, ray_settings)
        except LoadError as exc:
            raise click.ClickException(exc.msg) from None
        click.echo(f"deployed {fn.name} as Ray Serve application {ray_serve.app_name(fn)!r} on {address}")


@cli.command()
def openapi() -> None:
    """Print the OpenAPI document of the installed pipelines and plugin routes."""
    from warmgate.core.http.openapi import build_openapi
    from warmgate.core.plugins import get_routes

    click.echo(json.dumps(build_openapi(get_pipelines().values(), get_routes()), indent=2))


def main(argv: list[str] | None = None) -> Any:
    load_plugins()
    pm.hook.register_commands(cli=cli)
    return cli.main(args=argv, prog_name="warmgate")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
