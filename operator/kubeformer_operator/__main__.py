"""`python -m kubeformer_operator`: the same as the `kubeformer-operator` command."""

import sys

from kubeformer_operator.main import main

sys.exit(main())
