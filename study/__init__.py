"""lenet-study: an experiment-tracked hyperparameter study of LeNet-5 variants; docs/architecture.md gives each module's one job."""
