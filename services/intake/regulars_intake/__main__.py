from regulars_runtime.service import serve

from .bootstrap import DEFINITION, build

serve(DEFINITION, build)
