from regulars_runtime.service import serve

from .bootstrap import DEFINITION

serve(DEFINITION)
