"""lenet-study: an experiment-tracked hyperparameter study of LeNet-5 variants; README's Layout gives each module's one job."""
