"""docker-compose.yml, cross-checked against the code (Docker itself does not run here).

Service names, ports, environment variables, topic names and partition counts,
CLI commands, Prometheus targets and mounted files must all agree with
riskflow/core/settings.py, riskflow/core/kafka.py, the CLI and deploy/.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from riskflow.cli import build_parser
from riskflow.core.kafka import topic_specs
from riskflow.core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES: dict[str, Any] = COMPOSE["services"]
RISKFLOW = {name: s for name, s in SERVICES.items() if s.get("build") == "."}
WORKERS = {name: s for name, s in RISKFLOW.items() if s.get("command") == ["worker"]}


def env(service: dict[str, Any]) -> dict[str, str]:
    e = service.get("environment") or {}
    return {k: str(v) for k, v in e.items()} if isinstance(e, dict) else dict(x.split("=", 1) for x in e)


def settings_of(service: dict[str, Any]) -> Settings:
    return Settings.model_validate({k[len("RISKFLOW_") :].lower(): v for k, v in env(service).items()})


def test_the_stack_has_every_part() -> None:
    assert set(SERVICES) == {
        "kafka",
        "kafka-init",
        "worker-1",
        "worker-2",
        "simulator",
        "trainer",
        "alert-store",
        "feed",
        "prometheus",
        "grafana",
    }
    assert set(WORKERS) == {"worker-1", "worker-2"}
    assert SERVICES["alert-store"]["image"].startswith("postgres:")


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_images_are_pinned(name: str) -> None:
    image = SERVICES[name]["image"]
    repo, _, tag = image.rpartition(":")
    assert repo and tag and tag != "latest", image
    # An exact release (PostgreSQL's are major.minor, e.g. 16.6), never a moving major tag.
    assert re.fullmatch(r"v?\d+\.\d+(\.\d+)?(-[\w.]+)?", tag), f"{image}: pin an exact version"


def test_dockerfile_base_image_is_pinned() -> None:
    base = re.search(r"^FROM\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.M)
    assert base and re.search(r":\d+\.\d+\.\d+", base[1]), base


def test_kafka_is_the_official_image_in_kraft_mode() -> None:
    kafka = SERVICES["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    e = env(kafka)
    assert set(e["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert not any("ZOOKEEPER" in k for k in e)
    node = e["KAFKA_NODE_ID"]
    assert e["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{node}@kafka:9093"


def _internal_listener() -> str:
    e = env(SERVICES["kafka"])
    advertised = dict(x.split("://", 1)[::-1] for x in e["KAFKA_ADVERTISED_LISTENERS"].split(","))
    return next(addr for addr, name in advertised.items() if name == e["KAFKA_INTER_BROKER_LISTENER_NAME"])


@pytest.mark.parametrize("name", sorted(RISKFLOW))
def test_riskflow_services_use_only_real_settings(name: str) -> None:
    e = env(RISKFLOW[name])
    known = {f"RISKFLOW_{f.upper()}" for f in Settings.model_fields}
    assert set(e) <= known, set(e) - known
    s = settings_of(RISKFLOW[name])  # values validate too
    assert s.kafka_bootstrap == _internal_listener()
    assert RISKFLOW[name]["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"


@pytest.mark.parametrize("name", sorted(RISKFLOW))
def test_riskflow_commands_parse_with_the_cli(name: str) -> None:
    svc = RISKFLOW[name]
    if svc.get("entrypoint"):
        assert svc["entrypoint"] == ["/bin/sh", "-c"]
        (script,) = svc["command"]
        commands = [shlex.split(part) for part in script.split("&&")]
    else:
        commands = [["riskflow", *svc["command"]]]
    for argv in commands:
        assert argv[0] == "riskflow", argv
        build_parser().parse_args(argv[1:])  # exits (fails the test) on an unknown command or option


def test_topic_initialisation_matches_the_code() -> None:
    init = SERVICES["kafka-init"]
    assert init["image"] == SERVICES["kafka"]["image"]
    assert env(init)["BOOTSTRAP"] == _internal_listener()
    created = {t.split(":")[0]: int(t.split(":")[1]) for t in env(init)["TOPICS"].split()}
    for name in RISKFLOW:
        assert topic_specs(settings_of(RISKFLOW[name])) == created, name
    assert "$${TOPICS}" in init["command"][0]


def test_workers_expose_metrics_where_prometheus_scrapes() -> None:
    prom_cfg = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    (job,) = [j for j in prom_cfg["scrape_configs"] if j["job_name"] == "riskflow"]
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    expected = set()
    host_ports = set()
    for name, svc in WORKERS.items():
        s = settings_of(svc)
        assert s.metrics_host == "0.0.0.0", "inside a container /metrics must listen beyond loopback"
        expected.add(f"{name}:{s.metrics_port}")
        (mapping,) = svc["ports"]
        bind, host, container = mapping.split(":")
        assert bind == "127.0.0.1"
        assert int(container) == s.metrics_port
        host_ports.add(host)
    assert targets == expected
    assert len(host_ports) == len(WORKERS), "two workers cannot publish the same host port"
    # Both workers form one consumer group and share the topics.
    assert len({settings_of(s).app_id for s in WORKERS.values()}) == 1


def _mounts(service: dict[str, Any]) -> dict[str, Path]:
    """container path -> host path, for bind mounts (host paths starting with ./)."""
    out = {}
    for v in service.get("volumes", []):
        src, dst = v.split(":")[:2]
        if src.startswith("./"):
            out[dst] = ROOT / src
    return out


def test_mounted_files_exist_and_fit_together() -> None:
    prom, graf = SERVICES["prometheus"], SERVICES["grafana"]
    for svc in (prom, graf):
        for host in _mounts(svc).values():
            assert host.exists(), host
    pm = _mounts(prom)
    cfg_arg = next(a for a in prom["command"] if a.startswith("--config.file="))
    cfg_path = Path(cfg_arg.split("=", 1)[1])
    host_cfg = pm[str(cfg_path.parent)] / cfg_path.name
    assert host_cfg.is_file()
    for rule_file in yaml.safe_load(host_cfg.read_text())["rule_files"]:
        assert (host_cfg.parent / rule_file).is_file(), rule_file

    gm = _mounts(graf)
    prov = gm["/etc/grafana/provisioning"]
    ds = yaml.safe_load((prov / "datasources/prometheus.yml").read_text())["datasources"][0]
    prom_port = prom["ports"][0].split(":")[1]
    assert ds["url"] == f"http://prometheus:{prom_port}"
    provider = yaml.safe_load((prov / "dashboards/riskflow.yml").read_text())["providers"][0]
    dash_dir = gm[provider["options"]["path"]]
    assert sorted(p.name for p in dash_dir.glob("*.json")) == ["detectors.json", "overview.json", "regional-risk.json"]
    home = env(graf)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (dash_dir / Path(home).name).is_file() and str(Path(home).parent) == provider["options"]["path"]


def test_feed_stores_alerts_in_the_alert_store() -> None:
    feed, store = SERVICES["feed"], SERVICES["alert-store"]
    s = settings_of(feed)
    pg = env(store)
    container_port = store["ports"][0].split(":")[-1]
    user, db, password = pg["POSTGRES_USER"], pg["POSTGRES_DB"], pg["POSTGRES_PASSWORD"]
    assert s.store_url == f"postgresql://{user}:{password}@alert-store:{container_port}/{db}"
    assert feed["depends_on"]["alert-store"]["condition"] == "service_healthy"
    assert s.feed_host == "0.0.0.0" and feed["ports"] == [f"127.0.0.1:{s.feed_port}:{s.feed_port}"]
    assert '".[postgres]"' in (ROOT / "Dockerfile").read_text(), "the image needs the PostgreSQL driver"


def test_the_topic_table_lists_every_topic_the_code_creates() -> None:
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    table = text.split("## Topics", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `([\w.-]+)` \(`RISKFLOW_TOPIC_\w+`\)", table, re.M))
    assert listed == set(topic_specs(Settings())), listed ^ set(topic_specs(Settings()))


def _named_mounts(service: dict[str, Any]) -> dict[str, str]:
    """container path -> named volume, for named-volume mounts."""
    out = {}
    for v in service.get("volumes", []):
        src, dst = v.split(":")[:2]
        if not src.startswith(("./", "/")):
            out[dst] = src
    return out


def test_workers_start_with_the_model_the_trainer_wrote() -> None:
    trainer = SERVICES["trainer"]
    (script,) = trainer["command"]
    train = next(shlex.split(part) for part in script.split("&&") if shlex.split(part)[1] == "train")
    out = train[train.index("--out") + 1]
    volume = _named_mounts(trainer)[out]
    assert volume in COMPOSE["volumes"]
    assert (
        "\nRUN " in (ROOT / "Dockerfile").read_text()
        and f"mkdir {out} && chown riskflow" in (ROOT / "Dockerfile").read_text()
    ), "the unprivileged image user must own the models volume"
    for name, svc in WORKERS.items():
        assert settings_of(svc).model_dir == Path(out), name
        assert _named_mounts(svc)[out] == volume, name
        assert svc["depends_on"]["trainer"]["condition"] == "service_completed_successfully", name


def test_published_ports_listen_on_loopback_and_no_password_is_in_the_file() -> None:
    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    ports = [p for svc in COMPOSE["services"].values() for p in svc.get("ports", [])]
    assert ports and all(str(p).startswith("127.0.0.1:") for p in ports), ports
    for svc in COMPOSE["services"].values():
        env = svc.get("environment") or {}
        for name, value in env.items() if isinstance(env, dict) else []:
            if "PASSWORD" in name or name == "RISKFLOW_STORE_URL":
                assert "${" in str(value), f"{name} is written in the file, not taken from .env"
    # every variable the file takes from .env is in the example the operator copies
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    for var in set(re.findall(r"(?<!\$)\$\{([A-Z_]+)", text)):
        assert re.search(rf"^{var}=", example, re.M), f"{var} missing from .env.example"
