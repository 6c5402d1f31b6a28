"""odenets' Hydra launchers. Hydra finds launcher classes only in the `hydra_plugins` namespace package, so
`hydra/launcher=slurm` (conf/hydra/launcher/slurm.yaml) names `hydra_plugins.odenets_launchers.slurm.SlurmLauncher`."""
