"""One typed settings object for everything Cutline can be told.

Values come from the environment (prefix ``CUTLINE_``) or a ``.env`` file in the
working directory; every field has a default that works on a fresh machine.
"""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cutline.base.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_RULES_FILE = PROJECT_ROOT / "rules" / "default.yaml"
DEFAULT_PRESETS_FILE = PROJECT_ROOT / "rules" / "channel_presets.yaml"


class BatchOrder(StrEnum):
    """Which waiting stage task of a shoot starts first when a worker thread frees up."""

    STREAMING = "streaming"  # the batch furthest along: first assets and reviews land early
    STAGE_BY_STAGE = "stage-by-stage"  # every batch through a stage before the next stage


class BatchRunner(StrEnum):
    """Where a shoot's batches run (`batch_runner`)."""

    IN_PROCESS = "in-process"  # stage tasks in the shoot run's own process
    FLOW_RUNS = "flow-runs"  # one process-batch flow run per batch, for work pool workers
    TASK_WORKERS = "task-workers"  # one background task run per batch, for `cutline task-worker`


class CutlineSettings(BaseSettings):
    """Settings for a Cutline installation (env prefix ``CUTLINE_``)."""

    model_config = SettingsConfigDict(
        env_prefix="CUTLINE_", env_file=".env", extra="ignore", validate_default=True
    )

    data_root: Path = Field(
        default=Path("~/.cutline"),
        description=(
            "Where the local stack keeps its state: the Prefect home (SQLite database), "
            "the local DAM catalog and the model cache unless those are set elsewhere."
        ),
    )
    output_root: Path | None = Field(
        default=None,
        description=(
            "Where renditions, masks and ledgers are written, one folder per job ID. "
            "Defaults to <data_root>/output."
        ),
    )
    model: str = Field(
        default="u2netp",
        description=(
            "Background-removal model: a rembg model name (u2netp, u2net, isnet-general-use, "
            "birefnet-general, ...) or the path of a U2-Net-style ONNX file."
        ),
    )
    model_home: Path | None = Field(
        default=None,
        description="Folder holding model weights (rembg's U2NET_HOME). Defaults to <data_root>/models.",
    )
    model_input_max_side: int = Field(
        default=1024,
        ge=320,
        description=(
            "Images are decoded at no more than this long side for inference (the model sees "
            "320 px anyway); the mask is then upscaled to the source's full resolution."
        ),
    )
    onnx_threads: int = Field(
        default=0,
        ge=0,
        description=(
            "Threads per onnxruntime session. 0: the machine's cores divided by `workers`, so "
            "batches running the model at once do not fight over the same cores."
        ),
    )
    onnx_providers: list[str] = Field(
        default_factory=list,
        description=(
            "onnxruntime execution providers in order of preference, as a JSON list, e.g. "
            '["CUDAExecutionProvider", "CPUExecutionProvider"] on a GPU worker (needs '
            "onnxruntime-gpu). Empty lets rembg choose."
        ),
    )
    confidence_second_view: bool = Field(
        default=True,
        description=(
            "Run the model a second time on a padded view of each image and score how well "
            "the two masks agree: the strongest predictor of a bad cutout, at about twice "
            "the inference time. Off, the score rests on the mask alone."
        ),
    )
    batch_size: int = Field(
        default=16,
        ge=1,
        le=5000,
        description=(
            "Images per mapped task. Larger batches mean fewer Prefect task runs "
            "(less orchestration overhead); smaller ones mean finer progress and retries."
        ),
    )
    distribute_batches: bool = Field(
        default=False,
        description=(
            "Run each batch as its own process-batch flow run (deployment `batch_deployment`), so "
            "every worker polling its work pool shares the shoot. Off: batches run as mapped "
            "tasks inside the shoot run's process. The same as batch_runner 'flow-runs'; "
            "batch_runner, when set, takes precedence."
        ),
    )
    batch_runner: BatchRunner | None = Field(
        default=None,
        description=(
            "Where a shoot's batches run: 'in-process' (stage tasks in the shoot run's own "
            "process), 'flow-runs' (one process-batch flow run per batch, deployment "
            "`batch_deployment`, for work pool workers: a new process and model load per batch) "
            "or 'task-workers' (one background task run per batch, for long-lived "
            "`cutline task-worker` processes that load the model once). Empty: 'flow-runs' when "
            "distribute_batches is on, else 'in-process'."
        ),
    )
    batch_deployment: str = Field(
        default="process-batch/batch",
        description="Deployment started per batch when distribute_batches is on.",
    )
    workers: int = Field(
        default=2,
        ge=1,
        le=64,
        description=(
            "Batches cut out at once inside one shoot run (threads sharing one model session); "
            "as many more go through the other stages beside them."
        ),
    )
    batch_order: BatchOrder = Field(
        default=BatchOrder.STREAMING,
        description=(
            "How a shoot's batches go through the stages: 'streaming' moves each batch on as "
            "soon as its stage is done, so the first assets reach the DAM and the first reviews "
            "wait for a retoucher early in the run; 'stage-by-stage' takes every batch through "
            "a stage before the next one (kept for comparison in benchmarks)."
        ),
    )
    model_slots: int = Field(
        default=2,
        ge=1,
        le=256,
        description=(
            "Cutout batches running the model at once across every shoot and worker (a Prefect "
            "global concurrency limit, 'cutline-model'); set it to the number of model workers."
        ),
    )
    dam_writes_per_second: float = Field(
        default=20.0,
        gt=0,
        description="Rate limit of DAM registrations across every shoot and worker ('cutline-dam-writes').",
    )
    max_concurrent_shoots: int = Field(
        default=2,
        ge=1,
        le=100,
        description="process-shoot runs at once on the stack; further shoots wait in order (ENQUEUE).",
    )
    rules_file: Path = Field(
        default=DEFAULT_RULES_FILE,
        description="Routing rules (YAML). Copy rules/default.yaml, edit it, and point this at the copy.",
    )
    presets_file: Path = Field(
        default=DEFAULT_PRESETS_FILE,
        description="Channel presets for flat JPG renditions (YAML): size, background, square canvas, margin.",
    )
    manifest_date_order: Literal["", "day-first", "month-first"] = Field(
        default="",
        description=(
            "How the studio writes numeric manifest deadlines such as 03/04/2027: 'day-first' "
            "(3 April) or 'month-first' (March 4). Empty: only YYYY-MM-DD (or a month name) is "
            "accepted, and a numeric date fails its row with a reason, so a shoot never reads "
            "two rows in two orders."
        ),
    )
    sku_pattern: str = Field(
        default=r"^(?P<sku>[^_]+)",
        description=(
            "Regular expression applied to a file's stem to derive its SKU when the manifest "
            "gives none; the named group 'sku' is used. Default: the stem up to the first '_'."
        ),
    )
    dam_adapter: str = Field(
        default="local-catalog",
        description="DAM adapter used to register assets: local-catalog, object-store or http (`cutline dam adapters`).",
    )
    catalog_dir: Path | None = Field(
        default=None,
        description="Folder of the local DAM catalog. Defaults to <data_root>/catalog.",
    )
    max_pixels: int = Field(
        default=200_000_000,
        ge=1,
        description=(
            "Images with more pixels than this are refused (decompression-bomb guard). "
            "200 MP admits every current medium-format camera."
        ),
    )
    png_compress_level: int = Field(
        default=1,
        ge=0,
        le=9,
        description="zlib level for PNG renditions and masks (1 is fast and still lossless).",
    )
    review_escalate_after_hours: float = Field(
        default=24.0,
        gt=0,
        description=(
            "A waiting review is escalated (tagged, event cutline.review.escalated) when it has "
            "waited this long, or earlier when its manifest deadline has passed."
        ),
    )
    housekeeping_minutes: float = Field(
        default=5.0,
        gt=0,
        le=24 * 60,
        description=(
            "How often the stack's worker escalates overdue reviews and recovers runs "
            "whose process died (no flow run is created for it)."
        ),
    )
    stranded_after_seconds: float = Field(
        default=600.0,
        ge=35,
        description=(
            "A Running review, sign-off, shoot or batch run with no Prefect heartbeat for this "
            "long lost its process: reviews and sign-offs are run again (landing the answer "
            "already given), shoots and batches are marked Crashed. Keep it above 3x the "
            "PREFECT_FLOWS_HEARTBEAT_FREQUENCY of every process running Cutline flows (the "
            "stack's worker: 30 s; Prefect's default: 180 s)."
        ),
    )
    shoot_deployment: str = Field(
        default="process-shoot/shoot",
        description=(
            "Deployment `cutline run` and `cutline demo` submit each shoot to (flow/deployment), "
            "so every shoot is a run ops can Retry from the UI."
        ),
    )
    review_deployment: str = Field(
        default="review-cutout/review",
        description="Deployment started for each image routed to review (flow/deployment).",
    )
    signoff_deployment: str = Field(
        default="signoff-shoot/signoff",
        description="Deployment started when a shoot's assets are in the DAM (flow/deployment); "
        "empty turns automatic sign-off requests off.",
    )
    signoff_webhook_url: str | None = Field(
        default=None,
        description="Called (POST, JSON, no secrets) once per signed-off shoot, so the studio's "
        "own tools can react.",
    )
    signoff_webhook_retries: int = Field(
        default=4, ge=0, le=10, description="Retries of the sign-off webhook, with backoff."
    )
    review_link_days: float = Field(
        default=90.0,
        gt=0,
        le=365,
        description=(
            "Days the links of a review's page (preview, source, mask, PSD) keep working; a "
            "review waiting longer gets a new page when it is resumed or the job reruns."
        ),
    )
    job_wait_minutes: float = Field(
        default=240.0,
        ge=0,
        le=7 * 24 * 60,
        description=(
            "How long a shoot run waits while another run of the same job is going (one run "
            "per job at a time); after that it fails naming the other run."
        ),
    )
    share_host: str = Field(
        default="127.0.0.1",
        description="Address of the read-only contact-sheet links (0.0.0.0 to reach clients on the network).",
    )
    share_port: int | None = Field(
        default=None, description="Port of the contact-sheet links; empty means server_port + 1."
    )
    share_link_days: float = Field(
        default=14.0,
        gt=0,
        le=365,
        description=(
            "Days a client link to a contact sheet keeps working; after that it answers 410 and "
            "the producer issues a new one with `cutline signoff link JOB`."
        ),
    )
    runner_poll_seconds: int = Field(
        default=2,
        ge=1,
        le=60,
        description=(
            "How often the stack's worker polls its work pool for runs to start or resume "
            "(PREFECT_WORKER_QUERY_SECONDS of the worker `cutline up` starts)."
        ),
    )
    work_pool: str = Field(
        default="cutline",
        min_length=1,
        description=(
            "Work pool of the deployments `cutline up` registers and its worker polls (a "
            "process pool, created when missing); prefect.yaml's deployments name the same pool."
        ),
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description=(
            "S3-compatible endpoint (e.g. http://127.0.0.1:8333 for SeaweedFS). Empty uses "
            "AWS_ENDPOINT_URL or AWS's regional endpoint."
        ),
    )
    s3_region: str | None = Field(
        default=None,
        description="S3 region (empty uses AWS_REGION / the profile). Also the region assumed for buckets whose server does not report one.",
    )
    s3_access_key_id: SecretStr | None = Field(
        default=None,
        description="S3 access key id. Empty uses the standard AWS environment variables or profile.",
    )
    s3_secret_access_key: SecretStr | None = Field(
        default=None,
        description="S3 secret access key. Never logged, never written to ledgers or artifacts.",
    )
    s3_profile: str | None = Field(default=None, description="AWS profile name for S3 credentials.")
    storage_max_attempts: int = Field(
        default=3,
        ge=1,
        le=10,
        description=(
            "Attempts per S3 request (botocore, with backoff) before the stage sees the error; "
            "the stage's own retries (stage_retry_delays) then retry the whole batch."
        ),
    )
    stage_retry_delays: list[float] = Field(
        default_factory=lambda: [5.0, 20.0, 60.0],
        description=(
            "Seconds to wait before each retry of a batch whose stage hit a transient error "
            "(storage or DAM unreachable), as a JSON list; its length is the number of retries. "
            "Together they are how long an outage a shoot rides out before it stops."
        ),
    )
    allowed_roots: list[str] = Field(
        default_factory=list,
        description=(
            "Folders or URI prefixes that a run's shoot, manifest and output root must lie "
            'under, as a JSON list (e.g. ["/mnt/shoots", "/mnt/cutline-out", "s3://studio-shoots"]). '
            "Empty allows any location; '..' and schemes outside allowed_schemes are refused "
            "either way."
        ),
    )
    allowed_schemes: list[str] = Field(
        default_factory=lambda: ["file", "s3"],
        description="URI schemes a run's paths may use ('file' is a plain local path).",
    )
    residency: Literal["eu", "any"] = Field(
        default="any",
        description=(
            "'eu' refuses to start a run, before any image is read, when a bucket is outside the "
            "EU/EEA or a configured endpoint is not in allowed_endpoints."
        ),
    )
    allowed_endpoints: list[str] = Field(
        default_factory=list,
        description=(
            "With residency 'eu': the hosts (host or host:port) that storage and DAM endpoints may "
            'use, as a JSON list, e.g. ["s3.eu-central-1.amazonaws.com", "dam.studio.example"].'
        ),
    )
    residency_file: Path = Field(
        default=PROJECT_ROOT / "rules" / "residency.yaml",
        description="Regions that count as EU/EEA (YAML: regions and prefixes).",
    )
    object_catalog_root: str | None = Field(
        default=None,
        description=(
            "Root (path or URI) of the object-storage DAM catalog. Defaults to <output_root>/_catalog, "
            "next to the renditions."
        ),
    )
    dam_http_base_url: str | None = Field(
        default=None, description="Base URL of the REST DAM used by the 'http' adapter."
    )
    dam_http_token: SecretStr | None = Field(
        default=None,
        description="Credential sent in the auth header to the REST DAM (never logged).",
    )
    dam_http_auth_header: str = Field(
        default="Authorization", description="Header carrying the DAM credential."
    )
    dam_http_auth_scheme: str = Field(
        default="Bearer",
        description="Prefix of the credential in the auth header (empty for none).",
    )
    dam_http_mapping_file: Path = Field(
        default=PROJECT_ROOT / "dam_adapters" / "http_mapping.yaml",
        description="Field mapping and endpoint paths of the REST DAM (YAML data file).",
    )
    dam_http_timeout: float = Field(default=30.0, gt=0, description="Seconds per DAM HTTP request.")
    dam_http_max_retries: int = Field(
        default=5,
        ge=0,
        le=20,
        description="Retries on 429 and 5xx (Retry-After honoured, else exponential backoff).",
    )
    dam_http_max_backoff: float = Field(
        default=60.0, gt=0, description="Longest wait between DAM retries, in seconds."
    )
    machine_hourly_rate: float = Field(
        default=1.20,
        ge=0,
        description="What an hour of this pipeline machine costs, for cost per image in the summary.",
    )
    retoucher_hourly_rate: float = Field(
        default=45.0,
        ge=0,
        description="What an hour of a retoucher costs, for the review lane's cost.",
    )
    review_seconds_per_image: float = Field(
        default=90.0,
        ge=0,
        description="Estimated retoucher time per review-lane image (for the time chart and cost).",
    )
    currency: str = Field(default="EUR", description="Currency of the hourly rates.")
    server_host: str = Field(
        default="127.0.0.1", description="Host the embedded Prefect server binds to."
    )
    server_port: int = Field(
        default=4200,
        ge=1,
        le=65535,
        description="Port of the embedded Prefect server (API and UI).",
    )
    server_database_url: str | None = Field(
        default=None,
        description=(
            "Database of the embedded Prefect server. Empty means SQLite under "
            "<data_root>/prefect; set a postgresql+asyncpg:// URL for anything beyond a demo."
        ),
    )
    server_pause_expiry_check_seconds: float = Field(
        default=120.0,
        gt=0,
        description=(
            "How often the embedded Prefect server looks for paused runs whose timeout has "
            "passed (Prefect's own default is 5 s). Each look reads every waiting run: with "
            "3,000 reviews waiting, a look every 5 s kept a seventh of an idle server's core "
            "busy (benchmarks/waiting_idle.py), and reviews wait for days. Cutline's reviews "
            "and sign-offs wait without a timeout; a pause with one fails at most this late."
        ),
    )

    @field_validator("data_root", "output_root", "model_home", "catalog_dir", mode="before")
    @classmethod
    def _not_blank(cls, value: object) -> object:
        # An empty variable would silently mean the current folder.
        if isinstance(value, str) and not value.strip():
            raise ValueError("is empty; give a folder, or unset it to use the default")
        return value

    @field_validator("data_root", "output_root", "model_home", "catalog_dir", mode="after")
    @classmethod
    def _expand_user(cls, value: Path | None) -> Path | None:
        return value.expanduser().resolve() if value is not None else None

    @property
    def batch_execution(self) -> BatchRunner:
        """Where this host runs a shoot's batches: `batch_runner`, or for a host configured
        before it existed, `distribute_batches` (on: flow runs)."""
        if self.batch_runner is not None:
            return self.batch_runner
        return BatchRunner.FLOW_RUNS if self.distribute_batches else BatchRunner.IN_PROCESS

    @property
    def resolved_output_root(self) -> Path:
        """Output root with its default applied."""
        return self.output_root or self.data_root / "output"

    @property
    def resolved_model_home(self) -> Path:
        """Model folder with its default applied."""
        return self.model_home or self.data_root / "models"

    @property
    def resolved_catalog_dir(self) -> Path:
        """Local catalog folder with its default applied."""
        return self.catalog_dir or self.data_root / "catalog"

    @property
    def prefect_home(self) -> Path:
        """PREFECT_HOME of the embedded stack."""
        return self.data_root / "prefect"

    @property
    def ui_url(self) -> str:
        """The embedded Prefect UI."""
        return f"http://{self.server_host}:{self.server_port}"

    @property
    def resolved_share_port(self) -> int:
        """Port of the read-only contact-sheet links."""
        return self.share_port or self.server_port + 1

    @property
    def api_url(self) -> str:
        """API URL of the embedded Prefect server."""
        return f"http://{self.server_host}:{self.server_port}/api"


@lru_cache(maxsize=1)
def get_settings() -> CutlineSettings:
    """The process-wide settings, read once from the environment; a bad value raises a
    ConfigError naming each variable, its value and what it must be."""
    try:
        return CutlineSettings()
    except ValidationError as exc:
        raise settings_error(exc) from None


def settings_error(exc: ValidationError) -> ConfigError:
    """One line per bad setting, as the user wrote it: the variable, its value, the rule."""
    problems = []
    for error in exc.errors():
        name = "CUTLINE_" + "_".join(str(part) for part in error["loc"][:1]).upper()
        value = error.get("input")
        secret = any(word in name for word in ("SECRET", "TOKEN", "PASSWORD", "KEY"))
        shown = f"={value!r}" if isinstance(value, str | int | float) and not secret else ""
        problems.append(f"{name}{shown}: {error['msg'].removeprefix('Value error, ')}")
    return ConfigError(
        "Invalid setting(s): " + "; ".join(problems) + ".",
        hint="Fix the environment variable (or the .env file) and run again; "
        "`CutlineSettings` in cutline/base/settings.py describes every setting.",
    )


def reload_settings() -> CutlineSettings:
    """Forget cached settings (after the environment changed) and read them again."""
    get_settings.cache_clear()
    return get_settings()
