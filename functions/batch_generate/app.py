from recsys.batch import make_handler

handler = make_handler()
