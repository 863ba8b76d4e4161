#!/usr/bin/env bash
# Checks the Kubernetes base in docs/deploy/kubernetes offline: every resource file
# against Kubernetes' schemas, the Deployment's promises, and the settings it names
# through greeter-server --check-config. See --help.
set -euo pipefail
usage() {
  cat <<'USAGE'
usage: scripts/kubernetes-check.sh

Offline, with the Python package kubernetes-validate (scripts/test.sh installs it):
  1. each resource file kustomization.yaml lists passes
     `kubernetes-validate --strict` for Kubernetes 1.35 (unknown fields fail;
     kustomization.yaml itself has no schema);
  2. the Deployment keeps its promises: 2 replicas, maxUnavailable 0, readiness on
     /healthz and liveness on /livez of the metrics port, non-root, read-only root,
     no privilege escalation, every capability dropped, RuntimeDefault seccomp,
     memory requests and limits, Prometheus annotations on the metrics port, the
     config mounted as a directory (no subPath) from the configMapGenerator;
  3. greeter-server --check-config accepts the generated greeter.toml with the
     image's environment (the Dockerfile's ENV), the Deployment's env and args, and
     its effective settings match the manifests: the greeting and metrics ports, and
     terminationGracePeriodSeconds >= shutdown-delay + drain-timeout + 5 s.
Prints one line per step; exit 0, or 1 with what failed.
USAGE
}
case "${1:-}" in -h|--help) usage; exit 0 ;; esac
root=$(cd "$(dirname "$0")/.." && pwd)
base="$root/docs/deploy/kubernetes"
python3 -c "import kubernetes_validate" 2>/dev/null ||
  { echo "kubernetes-check.sh: needs kubernetes-validate (pip install kubernetes-validate)" >&2; exit 1; }
cargo build --release -q --manifest-path "$root/Cargo.toml" --bin greeter-server
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$base" "$root/Dockerfile" "$root/target/release/greeter-server" "$work" <<'PY'
import os, re, subprocess, sys, tomllib
import yaml

base, dockerfile, server, work = sys.argv[1:]
KUBERNETES = "1.35.0"

def fail(message):
    print(f"kubernetes-check.sh: FAILED: {message}", file=sys.stderr)
    sys.exit(1)

def expect(condition, message):
    if not condition:
        fail(message)

kustomization = yaml.safe_load(open(os.path.join(base, "kustomization.yaml")))
resources = {}
for name in kustomization["resources"]:
    path = os.path.join(base, name)
    run = subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet", "-k", KUBERNETES, path],
                         capture_output=True, text=True)
    expect(run.returncode == 0, f"{name} does not validate:\n{run.stdout}{run.stderr}")
    document = yaml.safe_load(open(path))
    resources[document["kind"]] = document
print(f"kubernetes: {', '.join(kustomization['resources'])} pass kubernetes-validate --strict "
      f"for Kubernetes {KUBERNETES}")

expect({"Deployment", "Service", "PodDisruptionBudget"} <= resources.keys(),
       f"the base lacks a resource: {sorted(resources)}")
deployment = resources["Deployment"]["spec"]
pod = deployment["template"]["spec"]
(container,) = pod["containers"]
expect(deployment["replicas"] == 2, "replicas is not 2")
expect(deployment["strategy"]["rollingUpdate"]["maxUnavailable"] == 0, "maxUnavailable is not 0")
ports = {p["name"]: p["containerPort"] for p in container["ports"]}
readiness, liveness = container["readinessProbe"]["httpGet"], container["livenessProbe"]["httpGet"]
expect((readiness["path"], readiness["port"]) == ("/healthz", "metrics"), f"readiness: {readiness}")
expect((liveness["path"], liveness["port"]) == ("/livez", "metrics"), f"liveness: {liveness}")
expect(pod["securityContext"]["runAsNonRoot"] is True, "runAsNonRoot")
expect(pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", "seccomp")
security = container["securityContext"]
expect(security["readOnlyRootFilesystem"] is True, "readOnlyRootFilesystem")
expect(security["allowPrivilegeEscalation"] is False, "allowPrivilegeEscalation")
expect(security["capabilities"]["drop"] == ["ALL"], "capabilities")
expect(pod.get("enableServiceLinks") is False, "enableServiceLinks: a Service greeter sets GREETER_PORT")
for kind in ("requests", "limits"):
    expect("memory" in container["resources"][kind], f"no memory {kind}")
annotations = deployment["template"]["metadata"]["annotations"]
expect(annotations["prometheus.io/scrape"] == "true", "prometheus.io/scrape")
expect(int(annotations["prometheus.io/port"]) == ports["metrics"], "prometheus.io/port is not the metrics port")
(generator,) = kustomization["configMapGenerator"]
(config_volume,) = [v for v in pod["volumes"] if v.get("configMap", {}).get("name") == generator["name"]]
(mount,) = [m for m in container["volumeMounts"] if m["name"] == config_volume["name"]]
expect("subPath" not in mount, "the config is mounted by subPath: a new version never arrives")
service = resources["Service"]["spec"]
expect(service["ports"][0]["targetPort"] == "greeting", "the Service's targetPort")
pdb = resources["PodDisruptionBudget"]["spec"]
expect(pdb["selector"]["matchLabels"] == deployment["selector"]["matchLabels"], "the PDB's selector")
print("kubernetes: the Deployment keeps its promises (replicas, probes, security, resources, mount)")

# The generated ConfigMap's files, where the mount puts them, in a folder of our own.
mount_dir = os.path.join(work, "etc-greeter")
os.makedirs(mount_dir)
for name in generator["files"]:
    with open(os.path.join(base, name), "rb") as source, \
         open(os.path.join(mount_dir, os.path.basename(name)), "wb") as target:
        target.write(source.read())
def in_work(value):
    return value.replace(mount["mountPath"], mount_dir)
env = {}
for line in open(dockerfile).read().replace("\\\n", " ").splitlines():
    if line.startswith("ENV "):
        env.update(re.findall(r"(GREETER_\w+)=(\S+)", line))
env.update({e["name"]: e["value"] for e in container.get("env", [])})
env = {name: in_work(value) for name, value in env.items()}
args = [in_work(a) for a in container.get("args", [])]
run = subprocess.run([server, *args, "--check-config"], capture_output=True, text=True,
                     env={"PATH": os.environ["PATH"], **env})
expect(run.returncode == 0 and not run.stderr,
       f"greeter-server --check-config with the Deployment's config, env {env} and args {args}: "
       f"exit {run.returncode}\n{run.stderr}")
settings = tomllib.loads(run.stdout)
def seconds(duration):
    number, unit = re.fullmatch(r"(\d+)(ms|s|m|h|d)", duration).groups()
    return int(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
expect(settings["port"] == ports["greeting"], f"greeter listens on {settings['port']}, not the greeting port")
expect(settings["metrics"].rsplit(":", 1)[1] == str(ports["metrics"]), f"metrics on {settings['metrics']}")
stop = seconds(settings["shutdown-delay"]) + seconds(settings["drain-timeout"])
grace = pod["terminationGracePeriodSeconds"]
expect(grace >= stop + 5, f"terminationGracePeriodSeconds {grace} < shutdown-delay + drain-timeout + 5 s ({stop + 5})")
print(f"kubernetes: greeter-server --check-config accepts the generated config, env and args "
      f"(stop {stop:g} s + 5 <= grace {grace} s)")
PY
