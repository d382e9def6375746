"""Checks docker/: the rendered compose file (argv[1], from `docker-compose config`), the
Dockerfile and .dockerignore. Each failure names what is wrong; exit 1 when any."""
import os
import re
import subprocess
import sys

import yaml

ROLES = ["gateway", "ingester", "worker", "updater", "stream", "consumer"]
failures = []


def check(condition, message):
    if not condition:
        failures.append(message)


def main():
    with open(sys.argv[1], encoding="utf-8") as file:
        compose = yaml.safe_load(file)
    services = compose["services"]

    for name in ["kafka", "postgres", "redis", "prometheus", "grafana", *ROLES]:
        check(name in services, f"service {name} is missing")
    check(services.get("kafka", {}).get("image", "").startswith("apache/kafka:"),
          "kafka must run the apache/kafka image")
    check("broker,controller" in str(services.get("kafka", {}).get("environment", {})),
          "kafka must run in KRaft mode (broker,controller)")
    # The producer sends records up to 2 x the 1 MiB body limit + 64 KiB (src/roles/app.cpp).
    kafka_environment = services.get("kafka", {}).get("environment", {})
    check(int(kafka_environment.get("KAFKA_MESSAGE_MAX_BYTES", 0)) >= 2 * 1048576 + 65536,
          "kafka: KAFKA_MESSAGE_MAX_BYTES must admit mesh's largest record")

    images = set()
    for role in ROLES:
        service = services.get(role, {})
        images.add(service.get("image"))
        check(service.get("command") == [f"--role={role}"], f"{role}: command must be --role={role}")
        check("healthcheck" in service, f"{role}: no healthcheck")
        check(service.get("read_only") is True, f"{role}: root filesystem must be read-only")
        check(str(service.get("user", "")).startswith("10001"), f"{role}: must run as uid 10001")
        check("ALL" in service.get("cap_drop", []), f"{role}: must drop all capabilities")
        depends = service.get("depends_on", {})
        for dependency in ["kafka", "postgres", "redis"]:
            condition = depends.get(dependency, {}).get("condition")
            check(condition == "service_healthy", f"{role}: must wait for {dependency} to be healthy")
        environment = service.get("environment", {})
        check(environment.get("MESH_KAFKA_BROKERS") == "kafka:9092", f"{role}: brokers")
        check("MESH_JWT_SECRET" not in environment, f"{role}: a secret value in the compose file")
        check(environment.get("MESH_JWT_SECRET_FILE", "").startswith("/run/"),
              f"{role}: the JWT secret must come from a file")
        # Only the gateway has a fixed host port; every other role must scale.
        if role != "gateway":
            check(not service.get("ports"), f"{role}: a published port blocks --scale")
    check(len(images) == 1, f"every role must run the same image, found {images}")
    check(int(services.get("worker", {}).get("scale", 1)) >= 2, "worker must run several replicas")
    check(services.get("gateway", {}).get("environment", {}).get("MESH_STREAM_URL")
          == "http://stream:8080", "gateway must reach the stream replicas by service name")

    # mesh ignores environment variables it does not know, so a misspelt name would pass
    # silently: every MESH_* variable of a role must name an option of `mesh --help`.
    binary = os.environ.get("MESH_BINARY", "build/release/mesh")
    check(os.access(binary, os.X_OK), f"no mesh binary at {binary} (set MESH_BINARY)")
    if os.access(binary, os.X_OK):
        help_text = subprocess.run([binary, "--help"], capture_output=True, text=True,
                                   check=False).stdout
        options = {"MESH_" + flag.upper().replace("-", "_")
                   for flag in re.findall(r"^\s+--([a-z0-9-]+)", help_text, re.MULTILINE)}
        check(len(options) > 20, f"`{binary} --help` listed too few options")
        for role in ROLES:
            for key in services.get(role, {}).get("environment", {}) or {}:
                if key.startswith("MESH_"):
                    check(key in options, f"{role}: {key} is not a mesh option")

    for name, service in services.items():
        environment = service.get("environment", {}) or {}
        for key in environment:
            check(not re.search(r"PASSWORD$|SECRET$", key),
                  f"{name}: {key} holds a secret in the compose file (use a *_FILE variable)")
        for volume in service.get("volumes", []) or []:
            source = volume.get("source", "") if isinstance(volume, dict) else str(volume).split(":")[0]
            if source.startswith("/"):
                check(os.path.exists(source), f"{name}: mounted file {source} does not exist")

    # Prometheus scrapes every role by its service name (every replica: DNS A records).
    with open("observability/prometheus/prometheus.yml", encoding="utf-8") as file:
        prometheus = yaml.safe_load(file)
    jobs = {job["job_name"]: job for job in prometheus.get("scrape_configs", [])}
    for role in ROLES:
        job = jobs.get(role)
        check(job is not None, f"prometheus.yml: no scrape job named {role}")
        if job is not None:
            names = [name for sd in job.get("dns_sd_configs", []) for name in sd.get("names", [])]
            check(role in names, f"prometheus.yml: job {role} does not resolve the service {role}")

    with open("docker/Dockerfile", encoding="utf-8") as file:
        dockerfile = file.read()
    stages = re.findall(r"^FROM\s+(\S+)", dockerfile, re.MULTILINE)
    check(stages and stages[0].startswith("debian:bookworm"), "the build stage must be Debian bookworm")
    check(stages and stages[-1] == "scratch", "the runtime stage must hold only the collected files")
    check(re.search(r"^USER 10001:10001$", dockerfile, re.MULTILINE), "the image must run as 10001")
    check('ENTRYPOINT ["mesh"]' in dockerfile, 'ENTRYPOINT must be ["mesh"]')
    check(re.search(r'^\s*CMD \["mesh", "healthcheck"', dockerfile, re.MULTILINE),
          "HEALTHCHECK must run mesh healthcheck")
    check("docker/collect-runtime.sh" in dockerfile, "the runtime files must come from collect-runtime.sh")
    for sources in re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile, re.MULTILINE):
        for source in sources.split():
            check(source == "." or os.path.exists(source), f"Dockerfile copies missing {source}")

    with open(".dockerignore", encoding="utf-8") as file:
        ignored = file.read().split()
    for entry in ["build/", "**/node_modules", ".local/", ".git"]:
        check(entry in ignored, f".dockerignore must exclude {entry}")

    for failure in failures:
        print(f"check_docker: FAIL: {failure}", file=sys.stderr)
    if not failures:
        print(f"check_docker: ok ({len(ROLES)} roles, {len(services)} services)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
