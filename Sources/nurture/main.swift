print("nurture")
