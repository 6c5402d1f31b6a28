"""Model families, one per module, registered by name in `odenets.models.registry` (timm-style).

Importing this package imports every family, so that each registers its constructors."""

from odenets.models import (  # noqa: F401  (each family registers its models on import)
    cliquenet,
    densenet,
    heunnet_authors,
    horesnet,
    lm_resnet,
    momentum_resnet,
    odenet,
    preact_resnet,
    recurrent,
    rkcnn,
    rknet,
)
from odenets.models.registry import (  # noqa: F401
    MODELS,
    WIDTH_ARGUMENTS,
    allowed_options,
    build_model,
    check_model,
    count_params,
    create_model,
    list_models,
    model_options,
    register_model,
    scale_width,
)
