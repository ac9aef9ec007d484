"""`WhiteboxSettings`: the timesteps and query budget of the white-box attacks (the audit
profile's `whitebox:` section).

Timesteps are given on the 1,000-step schedule the papers use and scaled to the model's own
`num_train_timesteps`, so one profile serves every model. The query budget per image is
`len(loss_timesteps) * loss_draws + 2 (PIA) + secmi_timestep / secmi_interval + 2 (SecMI) + 1 (SimA)`
denoiser evaluations (2 + 2 + 4 + 1 = 9 with the defaults), on at most `max_images_per_patient`
images of each patient (1 by default).

The defaults (also written out in the shipped profiles) are sized for a whole `--model` audit of
5,000 images within 15 minutes on a 2-core CPU (measured so far: benchmarks/RESULTS.md), and were checked to keep every attack at AUC >= 0.9 on the tests'
over-trained tiny model over three seeds (privacy_audits/whitebox_margins.md). They were 16
queries on every image before: 3 loss timesteps x 2 draws and SecMI in DDIM steps of 20.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from synthmed.config import StrictConfig

WhiteboxName = Literal["loss", "pia", "secmi", "sima"]
ALL_WHITEBOX: tuple[str, ...] = ("loss", "pia", "secmi", "sima")


class WhiteboxSettings(StrictConfig):
    """What the white-box (model-in-hand) membership attacks query."""

    attacks: list[WhiteboxName] = Field(default_factory=lambda: list(ALL_WHITEBOX), min_length=1)
    batch_size: int = Field(64, ge=1, description="images per denoiser call")
    conditions: Literal["given", "null"] = Field(
        "given", description="query with each image's own conditions (labels, age, sex), as the "
                             "hospital holds them, or with the null condition")
    loss_timesteps: list[int] = Field(default_factory=lambda: [50, 100], min_length=1,
                                      description="loss attack: timesteps (of 1000) it denoises at")
    loss_draws: int = Field(1, ge=1, description="loss attack: noise draws per timestep")
    pia_timestep: int = Field(10, ge=1, le=999, description="PIA: the timestep of its second query "
                              "(see synthmed.audit.whitebox.pia for why 10, not the paper's 100-200)")
    pia_p: float = Field(4.0, ge=1.0, description="PIA: the l_p norm of the error")
    secmi_timestep: int = Field(100, ge=1, le=980, description="SecMI: the timestep whose "
                                "step-wise error is compared")
    secmi_interval: int = Field(50, ge=1, description="SecMI: DDIM step between inversion points")
    secmi_direction: Literal["two-sided", "published"] = Field(
        "two-sided", description="SecMI: score the deviation of the error from the reference "
                                 "images' median either way (default), or the published lower-is-"
                                 "member error (see synthmed.audit.whitebox.secmi)")
    sima_timestep: int = Field(20, ge=0, le=999, description="SimA: the timestep of its one query")
    max_images_per_patient: int | None = Field(
        1, ge=1, description="score at most this many images of each candidate patient (a seeded "
                                "choice, the same for every attack; None: all). Membership is decided "
                                "per patient, so every patient is still scored; a patient's score is "
                                "aggregated over the images scored, and audit.json records how many. "
                                "The audit applies it; score_images scores every image it is given")
    max_reference_images: int | None = Field(
        500, ge=1, description="SecMI's two-sided score centres on at most this many reference "
                                "images (a seeded choice; None: all)")

    @model_validator(mode="after")
    def _check(self) -> "WhiteboxSettings":
        if any(not 0 <= t <= 999 for t in self.loss_timesteps):
            raise ValueError("loss_timesteps must lie in 0..999")
        if self.secmi_timestep % self.secmi_interval:
            raise ValueError("secmi_timestep must be a multiple of secmi_interval")
        if len(set(self.attacks)) != len(self.attacks):
            raise ValueError("whitebox.attacks lists an attack twice")
        return self

    def queries_per_image(self) -> dict[str, int]:
        """Denoiser evaluations each attack makes per image (the query budget)."""
        return {"loss": len(self.loss_timesteps) * self.loss_draws, "pia": 2,
                "secmi": self.secmi_timestep // self.secmi_interval + 2, "sima": 1}
