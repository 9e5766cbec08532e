"""medlora: small, swappable LoRA adapters that turn a general language model into a medical specialist."""

__version__ = "0.1.0"

MEDICAL_DISCLAIMER = (
    "This answer is for information only and is not medical advice; "
    "ask a qualified clinician about your own situation."
)
