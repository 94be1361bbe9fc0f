from recsys.handler import make_handler

handler = make_handler("record_purchases")
