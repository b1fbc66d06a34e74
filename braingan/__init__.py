"""braingan: does a class-conditional DCGAN help a brain-MRI classifier?"""
