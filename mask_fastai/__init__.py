__version__ = "0.0.1"

import warnings
# fastai on this torch warns at import that torch.jit.script is deprecated; it says nothing a user of this package can act on
warnings.filterwarnings('ignore', category=FutureWarning, message=r'.*torch\.jit\.script.* is deprecated')
