"""Classical schedulers and optimizers: pure-array cores (``graph``, ``itlinq``,
``powercontrol``) and their Policy wrappers (``policies``)."""
