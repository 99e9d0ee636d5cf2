"""A convolutional network for MNIST, written the way PyTorch's official example writes it.

Two convolutions, dropout, ``flatten(x, 1)``, ``log_softmax`` with ``nll_loss``, Adadelta
with a StepLR schedule, ``train()``/``eval()`` and ``.to(device)``. Only the four import
lines below are cnnlab's; with ``import torch``, ``import torch.nn as nn``,
``import torch.nn.functional as F`` and ``import torch.optim as optim`` instead, the same
program runs on PyTorch.

    python examples/mnist.py --data-dir DIR [--epochs 14] [--limit N]
"""

import argparse
import time

import idx_data

import cnnlab as torch
import cnnlab.nn as nn
import cnnlab.nn.functional as F
import cnnlab.optim as optim


class Net(nn.Module):
    def __init__(self):
        super(Net, self).__init__()  # noqa: UP008 (written as the PyTorch example writes it)
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        x = self.fc2(x)
        return F.log_softmax(x, dim=1)


def train(model, device, loader, optimizer, epoch, log_interval):
    model.train()
    for batch_idx, (data, target) in enumerate(loader):
        data, target = data.to(device), target.to(device)
        optimizer.zero_grad()
        output = model(data)
        loss = F.nll_loss(output, target)
        loss.backward()
        optimizer.step()
        if batch_idx % log_interval == 0:
            print(f"train epoch {epoch} [{batch_idx * len(data)}/{len(loader.dataset)}]"
                  f"  loss {loss.item():.4f}")


def test(model, device, loader):
    model.eval()
    test_loss, correct = 0.0, 0
    with torch.no_grad():
        for data, target in loader:
            data, target = data.to(device), target.to(device)
            output = model(data)
            test_loss += F.nll_loss(output, target, reduction="sum").item()
            pred = output.argmax(dim=1, keepdim=True)
            correct += pred.eq(target.view_as(pred)).sum().item()
    n = len(loader.dataset)
    print(f"test: average loss {test_loss / n:.4f}, accuracy {correct}/{n} "
          f"({100.0 * correct / n:.2f}%)")
    return correct / n


def dataset(folder, split, limit):
    images, labels = idx_data.load(folder, split, limit)
    x = torch.from_numpy(images).float().div(255).unsqueeze(1)
    x = (x - 0.1307) / 0.3081
    return torch.utils.data.TensorDataset(x, torch.from_numpy(labels))


def main(argv=None):
    parser = argparse.ArgumentParser(description="MNIST with a small CNN")
    parser.add_argument("--data-dir", required=True, help="folder with the MNIST IDX files")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--test-batch-size", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=14)
    parser.add_argument("--lr", type=float, default=1.0)
    parser.add_argument("--gamma", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--limit", type=int, default=None, help="use the first N images")
    parser.add_argument("--log-interval", type=int, default=100)
    parser.add_argument("--save-model", default=None, metavar="PATH")
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    device = torch.device("cpu")
    train_loader = torch.utils.data.DataLoader(
        dataset(args.data_dir, "train", args.limit), batch_size=args.batch_size, shuffle=True)
    test_loader = torch.utils.data.DataLoader(
        dataset(args.data_dir, "test", args.limit), batch_size=args.test_batch_size)

    model = Net().to(device)
    optimizer = optim.Adadelta(model.parameters(), lr=args.lr)
    scheduler = optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=args.gamma)
    start = time.perf_counter()
    accuracy = 0.0
    for epoch in range(1, args.epochs + 1):
        train(model, device, train_loader, optimizer, epoch, args.log_interval)
        accuracy = test(model, device, test_loader)
        scheduler.step()
    print(f"final accuracy {accuracy:.4f} in {time.perf_counter() - start:.1f}s")
    if args.save_model:
        torch.save(model.state_dict(), args.save_model)
    return accuracy


if __name__ == "__main__":
    main()
