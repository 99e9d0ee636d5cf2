"""Training an image classifier, the way PyTorch's CIFAR-10 tutorial does it.

A LeNet-style network on 3x32x32 images, ``nn.CrossEntropyLoss``, SGD with momentum on
mini-batches of 4, ``torch.max(outputs.data, 1)`` for the predictions, and the weights saved
with ``save(net.state_dict(), PATH)`` and read back with
``load_state_dict(load(PATH, weights_only=True))``. Only the four import lines below are
cnnlab's; with PyTorch's instead, the same program runs on PyTorch.

The tutorial's data is CIFAR-10; here MNIST digits, padded to 32x32 and repeated over
three channels, stand in for it, so the program runs from the MNIST files alone.

    python examples/classifier.py --data-dir DIR [--epochs 2] [--limit N]
"""

import argparse
import os
import tempfile

import idx_data
import numpy as np

import cnnlab as torch
import cnnlab.nn as nn
import cnnlab.nn.functional as F
import cnnlab.optim as optim


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)  # all dimensions but the batch
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def dataset(folder, split, limit):
    images, labels = idx_data.load(folder, split, limit)
    images = np.pad(images, ((0, 0), (2, 2), (2, 2)))  # 28x28 -> 32x32, as CIFAR's size
    x = torch.from_numpy(images).float().div(255).unsqueeze(1).repeat(1, 3, 1, 1)
    x = (x - 0.5) / 0.5
    return torch.utils.data.TensorDataset(x, torch.from_numpy(labels))


def main(argv=None):
    parser = argparse.ArgumentParser(description="the image-classifier tutorial")
    parser.add_argument("--data-dir", required=True, help="folder with the MNIST IDX files")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="use the first N images")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    trainloader = torch.utils.data.DataLoader(dataset(args.data_dir, "train", args.limit),
                                              batch_size=4, shuffle=True)
    testloader = torch.utils.data.DataLoader(dataset(args.data_dir, "test", args.limit),
                                             batch_size=4, shuffle=False)
    net = Net()
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD(net.parameters(), lr=0.001, momentum=0.9)

    for epoch in range(args.epochs):
        running_loss = 0.0
        for i, data in enumerate(trainloader, 0):
            inputs, labels = data
            optimizer.zero_grad()
            outputs = net(inputs)
            loss = criterion(outputs, labels)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            if i % 2000 == 1999:
                print(f"[{epoch + 1}, {i + 1:5d}] loss: {running_loss / 2000:.3f}")
                running_loss = 0.0

    path = os.path.join(tempfile.mkdtemp(), "net.pth")
    torch.save(net.state_dict(), path)
    net = Net()
    net.load_state_dict(torch.load(path, weights_only=True))

    correct, total = 0, 0
    with torch.no_grad():
        for data in testloader:
            images, labels = data
            outputs = net(images)
            _, predicted = torch.max(outputs.data, 1)
            total += labels.size(0)
            correct += (predicted == labels).sum().item()
    print(f"accuracy of the network on the {total} test images: {100 * correct // total} %")
    print(f"final accuracy {correct / total:.4f}")
    return correct / total


if __name__ == "__main__":
    main()
