"""Settings: one class, read from the environment (prefix ``HOTLINE_``) and ``.env``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class TierConfig(BaseModel):
    """A customer tier: its service-level target and routing privileges."""

    rank: int = Field(description="1 is the most valuable tier")
    sl_target_s: float = Field(gt=0, description="answer within this many seconds")
    rm_affinity_s: float = Field(
        default=0, ge=0, description="seconds the customer's own relationship manager is waited for"
    )


def default_tiers() -> dict[str, TierConfig]:
    """The bank-style default: a few key accounts answered first, nobody starved."""
    return {
        "platinum": TierConfig(rank=1, sl_target_s=10, rm_affinity_s=30),
        "gold": TierConfig(rank=2, sl_target_s=20, rm_affinity_s=15),
        "silver": TierConfig(rank=3, sl_target_s=40),
        "standard": TierConfig(rank=4, sl_target_s=60),
    }


class Settings(BaseSettings):
    """Every knob of a Hotline instance."""

    model_config = SettingsConfigDict(
        env_prefix="HOTLINE_", env_file=".env", extra="ignore", populate_by_name=True
    )

    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "HOTLINE_DATABASE_URL"),
        description="PostgreSQL URL; unset starts the embedded server in data_dir",
    )
    data_dir: Path = Field(default=Path(".hotline"), description="embedded server's folder")
    admin_username: str = "admin"
    admin_password: SecretStr | None = None
    jwt_secret: SecretStr | None = Field(
        default=None, description="token signing key; unset: generated once, kept in the database"
    )
    token_ttl_s: int = Field(default=8 * 3600, gt=0)
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_kib: int = Field(default=65536, ge=8)
    argon2_parallelism: int = Field(default=4, ge=1)
    public_base_url: str = "http://127.0.0.1:8000"
    port: int = Field(
        default=8000, ge=1, le=65535, description="`hotline serve`'s port unless --port is given"
    )
    twilio_auth_token: SecretStr | None = None
    webhook_secret: SecretStr | None = None
    # The telephony webhooks (app/ivr, docs/telephony.md).
    twilio_account_sid: str | None = Field(
        default=None,
        description="when set, Twilio requests for any other account (AccountSid) are refused",
    )
    twilio_validate: bool = Field(
        default=True,
        description="check X-Twilio-Signature; false only in development (a warning is logged "
        "at every request)",
    )
    twilio_voices: dict[str, str] = Field(
        # Twilio's default voice (``man``) speaks no Mandarin: a Chinese <Say> needs a voice
        # that does, or the provider may fail the verb.
        default_factory=lambda: {"zh-CN": "Polly.Zhiyu"},
        description='the <Say> voice per language, e.g. {"zh-CN": "Polly.Zhiyu", "en-US": '
        '"Polly.Joanna"}; a language without one: the provider\'s default voice',
    )
    webhook_replay_window_s: float = Field(
        default=300,
        gt=0,
        le=3600,
        description="a signed JSON webhook older (or newer) than this is refused as a replay",
    )
    telephony_max_body_bytes: int = Field(
        default=64 * 1024, gt=0, description="largest telephony webhook body accepted (413)"
    )
    ivr_hold_music_url: str = Field(
        default="http://com.twilio.music.classical.s3.amazonaws.com/BusyStrings.mp3",
        description="what a queued caller hears between announcements (fetched by the provider)",
    )
    twilio_api_base_url: str = Field(
        default="https://api.twilio.com",
        description="Twilio's REST API (bridging a queued caller, placing callbacks); another "
        "base URL only for a test double or a proxy",
    )
    twilio_api_timeout_s: float = Field(
        default=5.0, gt=0, le=60, description="how long one request to Twilio's REST API may take"
    )
    ivr_silence_s: float = Field(
        default=300,
        ge=60,
        description="a call in the menus or queued that no webhook has come for in this long "
        "is asked after (Twilio's REST API) and ended on record if over",
    )
    ivr_silence_sweep_s: float = Field(
        default=60, gt=0, description="how often the calls gone silent are looked for"
    )
    json_provider_url: str | None = Field(
        default=None,
        description="the JSON adapter's provider's API: Hotline asks it to place the calls "
        "that call its callers back (POST {url}/calls, signed with the webhook secret)",
    )
    json_provider_timeout_s: float = Field(
        default=5.0, gt=0, le=60, description="how long one request to the JSON provider may take"
    )
    callback_attempts: int = Field(
        default=3, ge=1, le=10, description="calls placed for a callback before it is given up"
    )
    callback_retry_s: float = Field(
        default=60.0, ge=0, description="the wait after an unanswered callback before the next"
    )

    tiers: dict[str, TierConfig] = Field(default_factory=default_tiers)
    default_tier: str = "standard"
    default_phone_region: str = Field(
        default="CN",
        description="ISO 3166 region whose numbers may be given without + and country code "
        "(national format, area code with its trunk 0) and whose service numbers (95561) "
        "are kept as they are",
    )

    starvation_bound_s: float = Field(
        default=30, ge=0, description="no contact waits past its tier target plus this"
    )
    dispatcher_enabled: bool = Field(
        default=True,
        description="run the dispatcher in this API process (false: `hotline dispatch` runs it)",
    )
    gc_tuned: bool = Field(
        default=False,
        description="fewer, cheaper garbage collections for a long-running server process",
    )
    dispatch_tick_s: float = Field(default=0.5, gt=0, description="dispatcher's safety tick")
    dispatch_batch: int = Field(
        default=100,
        gt=0,
        description="the window per queue: each queue's most urgent waiting contacts a round "
        "reads (a round reads at most this many times the queues with contacts waiting)",
    )
    dispatch_board_refresh_s: float = Field(
        default=30,
        gt=0,
        description="the dispatcher reads every agent again this often (between, as events "
        "name them)",
    )
    leader_retry_s: float = Field(default=0.5, gt=0, description="standby dispatcher's retry")
    leader_stale_s: float = Field(
        default=5,
        gt=0,
        description="a dispatcher leader whose session says nothing this long is taken for "
        "hung: a standby ends that session and takes over; the leader's own statements time "
        "out after it too",
    )
    db_pool_size: int = Field(
        default=20, gt=0, description="database connections per instance (requests wait for one)"
    )
    driver_pool_size: int = Field(
        default=10,
        gt=0,
        description="driver connections per instance for sign-in and taking contacts in",
    )
    idle_in_transaction_timeout_ms: int = Field(default=10_000, ge=0)
    event_poll_interval_s: float = Field(default=0.25, gt=0)
    event_read_gap_s: float = Field(
        default=0.003,
        ge=0,
        description="the event hub reads the log at most this often when woken (batching)",
    )
    timer_poll_interval_s: float = Field(default=0.5, gt=0)
    timer_batch_size: int = Field(default=50, gt=0)
    timer_max_attempts: int = Field(default=5, gt=0)
    lease_sweep_s: float = Field(
        default=5,
        gt=0,
        description="every instance looks this often for pending offers past their expiry "
        "(a missing or failed ring-timeout timer) and expires them",
    )
    lease_grace_s: float = Field(
        default=2,
        ge=0,
        description="how far past its expiry an offer is left to its own timer before the "
        "sweep expires it; a ringing offer ends within ring timeout + grace + sweep interval",
    )
    ws_client_queue_size: int = Field(default=1000, gt=0)
    # The wallboard's live figures (docs/websockets.md, "Live figures").
    wallboard_figures_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="live figures are pushed to open wallboards at least this often (and "
        "within 0.2 s of a change)",
    )
    wallboard_interval: Literal["15m", "30m", "1h"] = Field(
        default="15m", description="the wallboard's current interval, from local midnight"
    )
    wallboard_at_risk_list: int = Field(
        default=10, ge=0, le=100, description="at-risk complaints the wallboard names"
    )
    centre_zone: str = Field(
        default="Asia/Shanghai",
        description="the centre's IANA time zone: the wallboard's day and 'due today' start "
        "at its midnight; the default zone of the routing reports",
    )
    console_grace_s: float = Field(
        default=30,
        ge=0,
        description="an available agent whose last console (/ws/agent) has been gone this "
        "long becomes away (disconnected) and its ringing offers are taken back",
    )
    console_heartbeat_s: float = Field(
        default=5, gt=0, description="each instance marks its open consoles alive this often"
    )
    console_stale_s: float = Field(
        default=15,
        gt=0,
        description="a console not marked alive for this long counts as gone (its instance "
        "died); keep it a few heartbeats",
    )
    max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=0,
        description="largest request body accepted (413 past it), unless a path has its own",
    )
    max_body_bytes_by_path: dict[str, int] = Field(
        default_factory=lambda: {"/api/v1/complaints/*/attachments": 10 * 1024 * 1024 + 64 * 1024},
        description="path prefix -> largest body there (webhooks, uploads); the longest "
        "matching prefix wins and a `*` segment matches any one segment; by default a "
        "complaint's attachments take 10 MiB (and the multipart framing)",
    )
    # Sign-in and lookups (access and privacy).
    login_failures_per_user: int = Field(
        default=5, ge=1, description="wrong passwords for one username before it is throttled"
    )
    login_failures_per_address: int = Field(
        default=20, ge=1, description="wrong passwords from one client address before throttling"
    )
    login_window_s: float = Field(default=300.0, gt=0, description="window failures count in")
    login_backoff_s: float = Field(
        default=30.0, gt=0, description="first refusal after too many failures; doubles each time"
    )
    login_backoff_max_s: float = Field(default=3600.0, gt=0, description="longest refusal")
    hash_concurrency: int = Field(
        default=1, ge=1, description="password hashes computed at once (per process)"
    )
    lookup_limit: int = Field(
        default=30,
        ge=1,
        description="customer lookups by phone or ID number (and uniqueness conflicts) per user "
        "per lookup window, for roles that see masked numbers",
    )
    lookup_window_s: float = Field(default=60.0, gt=0)
    cors_origins: list[str] = Field(
        default_factory=list,
        description="origins allowed to call the API from a browser (none by default)",
    )
    log_level: str = "INFO"

    @field_validator("tiers")
    @classmethod
    def _tiers_not_empty(cls, value: dict[str, TierConfig]) -> dict[str, TierConfig]:
        if not value:
            raise ValueError("at least one customer tier must be configured")
        return value

    @field_validator("centre_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. Asia/Shanghai)") from exc
        return value

    @field_validator("default_phone_region")
    @classmethod
    def _known_phone_region(cls, value: str) -> str:
        region = value.strip().upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not a region with phone numbers (e.g. CN, HK, US)")
        return region

    @property
    def tier_names(self) -> list[str]:
        """Tier names, most valuable first."""
        return sorted(self.tiers, key=lambda name: self.tiers[name].rank)


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
