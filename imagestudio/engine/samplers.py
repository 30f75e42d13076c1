"""Samplers by the names AUTOMATIC1111 users know, mapped to diffusers
schedulers. A swap is `Cls.from_config(model_config, **overrides)`, so the
model's own training settings (prediction type, betas, spacing) carry over."""

from __future__ import annotations

from ..errors import RequestError

# name -> (diffusers class name, overrides). Order is the order shown to users.
SAMPLERS: dict[str, tuple[str, dict]] = {
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Euler": ("EulerDiscreteScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "DPM++ 2M Karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "DPM++ SDE": ("DPMSolverSinglestepScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "LMS": ("LMSDiscreteScheduler", {}),
    "DDIM": ("DDIMScheduler", {"clip_sample": False, "set_alpha_to_one": False}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    # LCM only gives good images with LCM-distilled weights (few steps, CFG ~1).
    "LCM": ("LCMScheduler", {}),
}

_ALIASES = {name.lower().replace(" ", "").replace("+", "p"): name for name in SAMPLERS}
_ALIASES.update({"euler_a": "Euler a", "k_euler_a": "Euler a", "k_euler": "Euler", "dpmpp_2m": "DPM++ 2M"})


def sampler_names() -> list[str]:
    return list(SAMPLERS)


def canonical_sampler(name: str) -> str:
    """'euler a', 'Euler_a', 'DPM++ 2M Karras' -> the canonical name, or RequestError."""
    if name in SAMPLERS:
        return name
    key = name.lower().replace(" ", "").replace("+", "p")
    if key in _ALIASES:
        return _ALIASES[key]
    raise RequestError(f"unknown sampler {name!r}; choose one of: {', '.join(SAMPLERS)}")


def make_scheduler(name: str, base_config):
    import diffusers

    cls_name, overrides = SAMPLERS[canonical_sampler(name)]
    cls = getattr(diffusers, cls_name)
    config = dict(base_config)
    # A model trained with trailing spacing / zero-terminal-SNR must keep it;
    # only fill in what the target class needs.
    if cls_name in ("DDIMScheduler", "LCMScheduler") and config.get("prediction_type") == "v_prediction":
        config.setdefault("timestep_spacing", "trailing")
    return cls.from_config(config, **overrides)
