from recsys.api import generate_router
from recsys.handler import make_handler

handler = make_handler(generate_router, load_model=True)
