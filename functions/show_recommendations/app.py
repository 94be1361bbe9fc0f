from recsys.api import show_router
from recsys.handler import make_handler

handler = make_handler(show_router)
