"""The experiment configs, one file per experiment (`get_config(arg)`, big_vision style).

Pass one to the command line (`--config=configs/cifar.py:mse`), or load it in
Python the same way: `base_config.load("cifar:mse")`, or, from the repository
root, `from configs import cifar; cifar.get_config("mse")`.
"""
