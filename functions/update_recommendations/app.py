from recsys.api import update_router
from recsys.handler import make_handler

handler = make_handler(update_router, load_model=True)
