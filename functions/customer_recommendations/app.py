from recsys.handler import make_handler

handler = make_handler("customer_recommendations")
