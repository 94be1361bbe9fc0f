from recsys.handler import make_handler

handler = make_handler("delete_recommendations")
