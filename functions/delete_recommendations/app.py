from recsys.api import delete_router
from recsys.handler import make_handler

handler = make_handler(delete_router)
