"""``python -m d2llm_st.cli``: the same as the ``d2llm`` command."""

import sys

from d2llm_st.cli import main

sys.exit(main())
